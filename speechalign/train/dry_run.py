"""Build a recipe's model (random init, nothing downloaded) and run one forward/backward on a fake batch."""

from __future__ import annotations

import copy
import logging

import torch

from speechalign.config import ExperimentConfig
from speechalign.models import build_model

log = logging.getLogger("speechalign.train")


def dry_run(cfg: ExperimentConfig, vocab_size: int = 50) -> dict:
    """Returns the loss parts; pretrained weights are replaced by a random init of the same size
    only when the pretrained source is not available locally."""
    cfg = copy.deepcopy(cfg)
    for sub in (cfg.model.whisper, cfg.model.wav2vec2):
        sub.pretrained = None
    model = build_model(cfg, vocab_size)
    model.encoder.enable_spec_augment(cfg.data.spec_augment)
    wav = torch.randn(2, 16000 * 2) * 0.1
    lens = torch.tensor([32000, 24000])
    out = model(wav, lens, [[3, 4, 5], [6, 7]])
    out["loss"].backward()
    parts = {k: float(v) for k, v in out.items()}
    log.info("dry run: %s encoder, %d layers, %.2fM parameters, losses %s", cfg.model.encoder,
             model.encoder.num_layers, sum(p.numel() for p in model.parameters()) / 1e6, parts)
    return parts
