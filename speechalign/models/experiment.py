"""Loading a trained model from its experiment directory alone (config, tokens, weights)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from speechalign.atomic import write_text
from speechalign.config import ExperimentConfig, load_config
from speechalign.models.asr import ASRModel, build_model
from speechalign.models.lora import has_lora, merge_lora
from speechalign.text import CharTokenizer

STEP_DIR = re.compile(r"^step-(\d+)$")
#: the decoder tokens of a model trained with model.decoder.train_vocab=targets (one id per line)
ATT_TRAIN_VOCAB = "att_train_vocab.txt"


def write_ids(path: Path, ids: list[int]) -> None:
    write_text(path, "".join(f"{i}\n" for i in ids))


def read_ids(path: Path) -> list[int]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a model trained with model.decoder.train_vocab=targets needs "
                                "the list of tokens it was trained on (written by speechalign train)")
    return [int(line) for line in path.read_text(encoding="utf-8").split()]


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Step directories, oldest first (validity not checked)."""
    if not ckpt_root.is_dir():
        return []
    dirs = [p for p in ckpt_root.iterdir() if p.is_dir() and STEP_DIR.match(p.name)]
    return sorted(dirs, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def resolve_weights(exp_dir: Path, checkpoint: str = "latest") -> Path:
    """``latest`` | ``step-N`` | ``avg-…`` (a file in the exp dir) | a path to a .safetensors file."""
    if checkpoint == "latest":
        steps = list_checkpoints(exp_dir / "checkpoints")
        if not steps:
            raise FileNotFoundError(f"{exp_dir}: no checkpoints/step-N directories")
        return steps[-1] / "model.safetensors"
    candidates = [exp_dir / "checkpoints" / checkpoint / "model.safetensors", exp_dir / f"{checkpoint}.safetensors",
                  exp_dir / checkpoint, Path(checkpoint)]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{exp_dir}: checkpoint {checkpoint!r} not found; valid: {valid_checkpoints(exp_dir)}")


def valid_checkpoints(exp_dir: Path) -> list[str]:
    """Names ``--checkpoint`` accepts whose weights file has a readable safetensors header (no tensors read)."""
    named = [(p.name, p / "model.safetensors") for p in list_checkpoints(exp_dir / "checkpoints")]
    named += [(p.stem, p) for p in sorted([*exp_dir.glob("avg-*.safetensors"), *exp_dir.glob("wise-*.safetensors")])]
    valid = []
    for name, path in named:
        try:
            with safe_open(str(path), "pt"):
                valid.append(name)
        except (SafetensorError, OSError, ValueError):
            pass
    return valid


def load_checkpoint_into(model: torch.nn.Module, weights: Path, exp_dir: Path) -> None:
    """Load ``weights`` strictly; a corrupt file or one of another architecture is a one-line error naming
    the file and listing the valid checkpoints."""
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{weights}: unreadable weights ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                         f"valid checkpoints of {exp_dir}: {valid_checkpoints(exp_dir)}") from None
    if has_lora(model) and not any("lora_" in k for k in state):
        # Averaged LoRA checkpoints are stored merged; the fresh adapters (B = 0) merge as a no-op.
        merge_lora(model)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in
                 (("missing key(s)", missing), ("unexpected key(s)", unexpected), ("shape mismatch(es)", shapes)) if v]
        raise ValueError(f"{weights}: does not fit the model of {exp_dir / 'config.yaml'}: {', '.join(parts)}; "
                         f"valid checkpoints of {exp_dir}: {valid_checkpoints(exp_dir)}")
    model.load_state_dict(state, strict=True)


def experiment_config(exp_dir: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The config saved by training, with ``key=value`` overrides (e.g. a read-out probe's
    ``model.whisper.length_mode=trim``)."""
    exp_dir = Path(exp_dir)
    for name in ("config.yaml", "tokens.txt"):
        if not (exp_dir / name).is_file():
            raise FileNotFoundError(f"{exp_dir}: missing {name}; is this a speechalign experiment directory?")
    return load_config(exp_dir / "config.yaml", list(overrides))


def build_experiment_model(exp_dir: str | Path, overrides: Sequence[str] = ()
                           ) -> tuple[ExperimentConfig, CharTokenizer, ASRModel]:
    """The config saved by training (with ``overrides``), its tokenizer and the model it describes (weights not
    loaded)."""
    exp_dir = Path(exp_dir)
    cfg = experiment_config(exp_dir, overrides)
    tokenizer = CharTokenizer.load(exp_dir / "tokens.txt")
    hf_config = exp_dir / "encoder_config.json"
    att_vocab, decoder_json = None, None
    if cfg.model.decoder.pretrained:
        from speechalign.text.whisper_vocab import WhisperVocab

        decoder_json = exp_dir / "decoder.json"
        att_vocab = WhisperVocab(exp_dir / "whisper_tokenizer.json", cfg.model.decoder.language)
    model = build_model(cfg, len(tokenizer), hf_config if hf_config.is_file() else None, decoder_json, att_vocab)
    if cfg.model.decoder.train_vocab == "targets":
        model.set_train_vocab(read_ids(exp_dir / ATT_TRAIN_VOCAB))
    return cfg, tokenizer, model


def load_experiment(exp_dir: str | Path, checkpoint: str = "latest", device: str | torch.device = "cpu",
                    overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, CharTokenizer, ASRModel]:
    """The config saved by training (with ``overrides``), its tokenizer and the model with the chosen weights
    (eval mode); LoRA adapters are merged into their base weights, so every consumer sees the plain architecture."""
    exp_dir = Path(exp_dir)
    cfg, tokenizer, model = build_experiment_model(exp_dir, overrides)
    load_checkpoint_into(model, resolve_weights(exp_dir, checkpoint), exp_dir)
    return cfg, tokenizer, merge_lora(model).to(device).eval()


def merged_weights(exp_dir: str | Path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LoRA checkpoint's weights with the adapters folded in (the plain architecture's keys)."""
    _, _, model = build_experiment_model(exp_dir)
    model.load_state_dict(state, strict=True)
    return {k: v.detach().contiguous() for k, v in merge_lora(model).state_dict().items()}
