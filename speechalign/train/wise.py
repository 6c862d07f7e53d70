"""Weight-space interpolation towards the pretrained model a fine-tune started from (WiSE-FT, Wortsman et
al. 2022): ``alpha * tuned + (1 - alpha) * pretrained``, per part. Fine-tuning on ten varieties with 120
Mandarin utterances costs pretrained Whisper's Mandarin; moving back part of the way recovers some of it
without training, and a dev sweep over ``alpha`` shows what the dialects pay for it."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from speechalign.atomic import save_weights
from speechalign.models.asr import build_model
from speechalign.models.experiment import load_experiment
from speechalign.models.lora import merge_lora

log = logging.getLogger("speechalign.train")

#: part -> the prefix of its parameters in the model's state dict (the CTC head has no pretrained counterpart)
PARTS = {"encoder": "encoder.", "decoder": "decoder."}


def interpolate(tuned: dict[str, torch.Tensor], start: dict[str, torch.Tensor], alpha: float,
                parts: list[str]) -> tuple[dict[str, torch.Tensor], int]:
    """``tuned`` moved towards ``start`` on the floating-point tensors of ``parts``; the number moved."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"interpolate: alpha must be in [0, 1] (1 = the fine-tuned weights), got {alpha}")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ValueError(f"interpolate: parts {unknown or parts} not among {sorted(PARTS)}")
    prefixes = tuple(PARTS[p] for p in parts)
    out, moved = {}, 0
    for k, v in tuned.items():
        if k.startswith(prefixes) and v.is_floating_point():
            if k not in start or start[k].shape != v.shape:
                raise ValueError(f"interpolate: {k} has no pretrained counterpart of shape {tuple(v.shape)}")
            out[k] = (alpha * v.float() + (1.0 - alpha) * start[k].float()).to(v.dtype)
            moved += 1
        else:
            out[k] = v.clone()
    return out, moved


def write_interpolation(exp_dir: Path, checkpoint: str, alpha: float, parts: list[str]) -> Path:
    """``exp_dir/wise-<parts>-<alpha>.safetensors``: the checkpoint moved towards the pretrained files named in
    the experiment's config (what training loaded at step 0)."""
    cfg, tokenizer, model = load_experiment(exp_dir, checkpoint)
    if not (cfg.model.decoder.pretrained or (cfg.model.encoder == "whisper" and cfg.model.whisper.pretrained)):
        raise ValueError(f"{exp_dir}: interpolate needs a fine-tune of pretrained weights; this model was "
                         "trained from random init")
    start = merge_lora(build_model(cfg, len(tokenizer))).state_dict()
    weights, moved = interpolate(model.state_dict(), start, alpha, parts)
    out = Path(exp_dir) / f"wise-{'+'.join(sorted(parts))}-{alpha:g}.safetensors"
    save_weights(out, weights, {"interpolated": f"{checkpoint}, alpha {alpha:g}, {'+'.join(sorted(parts))}"})
    log.info("%s: %d tensors of %s moved %.0f %% of the way back to the pretrained weights -> %s",
             checkpoint, moved, "+".join(sorted(parts)), 100 * (1 - alpha), out)
    return out
