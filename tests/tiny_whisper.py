"""A random tiny Whisper (transformers + CTranslate2 conversion), built offline for tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def make_tiny_whisper(root: Path, gain: float | None = None) -> Path:
    """A random tiny Whisper saved to ``root/hf`` with slow and fast (tokenizer.json) tokenizers;
    CTranslate2's converter needs a tokenizer, the zero-shot decoder needs tokenizer.json.

    With ``gain`` (about 3), weight matrices are redrawn with std gain/sqrt(fan_in): at the default
    init the decoder repeats one token whatever the audio, which would make decoding tests vacuous."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperTokenizer, WhisperTokenizerFast

    vocab = {f"t{i}": i for i in range(100)}
    vocab.update({s: 100 + i for i, s in enumerate(SPECIALS)})
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    WhisperTokenizer(str(root / "vocab.json"), str(root / "merges.txt"),
                     additional_special_tokens=SPECIALS[2:]).save_pretrained(root / "hf")
    WhisperTokenizerFast.from_pretrained(root / "hf").save_pretrained(root / "hf")
    config = WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                           decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                           vocab_size=len(vocab), pad_token_id=100, bos_token_id=100, eos_token_id=100,
                           decoder_start_token_id=101)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    # The defaults name ids of the real 51865-token vocabulary; CTranslate2 would index past this one.
    model.generation_config.begin_suppress_tokens, model.generation_config.suppress_tokens = [0, 100], list(range(101, 110))
    with torch.no_grad():  # non-trivial biases and norms, so an aliasing or bias bug cannot hide
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            elif gain is not None and p.ndim >= 2 and "embed_positions" not in name:
                p.normal_(0.0, gain / p[0].numel() ** 0.5)
    model.save_pretrained(root / "hf")
    return root / "hf"


def convert_to_ct2(src: Path, dst: Path, quantization: str | None = None) -> Path:
    """CTranslate2 model dir with tokenizer.json copied in, as fetch-pretrained lays it out."""
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(src), copy_files=["tokenizer.json"]).convert(str(dst), quantization=quantization,
                                                                          force=True)
    return dst
