"""Decoders and per-dialect CER scoring."""

# Here rather than in decode.run, so that the CLI can list them without importing torch.
MODES = ("ctc_greedy", "ctc_prefix_beam", "attention_rescoring", "joint_beam", "attention_beam")
ATTENTION_MODES = ("attention_rescoring", "joint_beam", "attention_beam")
