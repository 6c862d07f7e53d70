"""Learning-rate schedules: linear warmup, then cosine / linear / inverse-sqrt (noam) decay."""

from __future__ import annotations

import math
from functools import partial

import torch


SCHEDULES = ("cosine", "linear", "noam")


def lr_factor(step: int, warmup: int, total: int, kind: str, min_ratio: float) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "noam":
        return max(min_ratio, math.sqrt(max(warmup, 1) / (step + 1)))
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if kind == "linear":
        return min_ratio + (1 - min_ratio) * (1 - progress)
    raise ValueError(f"optim.schedule: unknown schedule {kind!r}; use cosine, linear or noam")


def ramp(step: int, value: float, to: float | None, start: int, end: int) -> float:
    """``value`` until ``start``, linearly to ``to`` at ``end``, then ``to`` (``to=None``: always ``value``)."""
    if to is None or step < start:
        return value
    if step >= end:
        return to
    return value + (to - value) * (step - start) / (end - start)


def build_scheduler(optimizer, optim_cfg, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    if optim_cfg.schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule: unknown schedule {optim_cfg.schedule!r}; use one of {SCHEDULES}")
    fn = partial(lr_factor, warmup=optim_cfg.warmup_steps, total=total_steps, kind=optim_cfg.schedule,
                 min_ratio=optim_cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
