"""Loading a trained model from its experiment directory alone (config, tokens, weights)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from speechalign.config import ExperimentConfig, load_config
from speechalign.models.asr import ASRModel, build_model
from speechalign.text import CharTokenizer

STEP_DIR = re.compile(r"^step-(\d+)$")


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
    known = [p.name for p in list_checkpoints(exp_dir / "checkpoints")] + [p.stem for p in exp_dir.glob("avg-*.safetensors")]
    raise FileNotFoundError(f"{exp_dir}: checkpoint {checkpoint!r} not found; available: {known}")


def load_experiment(exp_dir: str | Path, checkpoint: str = "latest",
                    device: str | torch.device = "cpu") -> tuple[ExperimentConfig, CharTokenizer, ASRModel]:
    """The config saved by training, its tokenizer and the model with the chosen weights (eval mode)."""
    exp_dir = Path(exp_dir)
    for name in ("config.yaml", "tokens.txt"):
        if not (exp_dir / name).is_file():
            raise FileNotFoundError(f"{exp_dir}: missing {name}; is this a speechalign experiment directory?")
    cfg = load_config(exp_dir / "config.yaml")
    tokenizer = CharTokenizer.load(exp_dir / "tokens.txt")
    hf_config = exp_dir / "encoder_config.json"
    att_vocab, decoder_json = None, None
    if cfg.model.decoder.pretrained:
        from speechalign.text.whisper_vocab import WhisperVocab

        decoder_json = exp_dir / "decoder.json"
        att_vocab = WhisperVocab(exp_dir / "whisper_tokenizer.json", cfg.model.decoder.language)
    model = build_model(cfg, len(tokenizer), hf_config if hf_config.is_file() else None, decoder_json, att_vocab)
    weights = resolve_weights(exp_dir, checkpoint)
    model.load_state_dict(load_file(str(weights)), strict=True)
    return cfg, tokenizer, model.to(device).eval()
