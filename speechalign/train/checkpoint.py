"""Checkpoints: ``checkpoints/step-N/{model.safetensors, state.pt, metrics.yaml}``, written atomically.

``model.safetensors`` holds the weights; ``state.pt`` (optimizer, scheduler, sampler, RNG) holds only
tensors and plain Python values so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from speechalign.atomic import save_weights
from speechalign.models.experiment import list_checkpoints, merged_weights
from speechalign.train.rundir import require_one_run

log = logging.getLogger("speechalign.train")


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (full disk, quota, I/O error); nothing of it was left behind."""


def save_checkpoint(ckpt_root: Path, step: int, model: torch.nn.Module, state: dict, metrics: dict,
                    keep_last: int = 0) -> Path:
    """Write ``step-<step>`` via a temporary directory renamed into place; prune to ``keep_last``. A failed
    write removes the temporary directory, so the previous checkpoints stay the newest valid ones."""
    final = ckpt_root / f"step-{step}"
    tmp = ckpt_root / f".step-{step}.tmp"
    writes = (("model.safetensors", lambda p: save_file(model_state(model), str(p))),
              ("state.pt", lambda p: torch.save(state, p)),
              ("metrics.yaml", lambda p: p.write_text(yaml.safe_dump(metrics, sort_keys=False, allow_unicode=True),
                                                      encoding="utf-8")))
    shutil.rmtree(tmp, ignore_errors=True)
    path = tmp
    try:
        tmp.mkdir(parents=True)
        for name, write in writes:
            path = tmp / name
            write(path)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except (OSError, RuntimeError, SafetensorError) as e:
        reason = _write_failure(e, ckpt_root)
        shutil.rmtree(tmp, ignore_errors=True)
        previous = [d.name for d in list_checkpoints(ckpt_root)]
        raise CheckpointWriteError(f"checkpoint step-{step} not written: {path}: {reason}; "
                                   + (f"{previous[-1]} is still the newest checkpoint" if previous else
                                      "no checkpoint exists yet") + " (free space, then train --resume)") from None
    if keep_last > 0:
        for old in list_checkpoints(ckpt_root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _write_failure(e: Exception, root: Path) -> str:
    """One line saying why a write failed; torch.save reports a full disk only as a stream position error."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).splitlines()[0] if str(e) else e.__class__.__name__
    if "No space left" in text:
        return "No space left on device"
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return text
    return f"No space left on device ({free // 1024} kB free)" if free < 1 << 20 else text


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable safetensors file ({e})") from None


def load_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for truncated/corrupt pickles
        raise ValueError(f"{path}: unreadable training state ({e.__class__.__name__}: {e})") from None


def read_metrics(step_dir: Path) -> dict:
    return yaml.safe_load((step_dir / "metrics.yaml").read_text(encoding="utf-8")) or {}


def latest_valid(ckpt_root: Path) -> tuple[Path, dict, dict] | None:
    """The newest checkpoint whose files all load; broken ones are skipped with a warning."""
    for step_dir in reversed(list_checkpoints(ckpt_root)):
        try:
            weights = load_weights(step_dir / "model.safetensors")
            state = load_state(step_dir / "state.pt")
            read_metrics(step_dir)
        except (ValueError, OSError, yaml.YAMLError) as e:
            log.warning("skipping broken checkpoint %s: %s", step_dir, e)
            continue
        return step_dir, weights, state
    return None


def average_checkpoints(step_dirs: list[Path], merge=None) -> dict[str, torch.Tensor]:
    """Float32 mean of floating-point tensors; integer buffers (counters) come from the newest. LoRA
    checkpoints are merged first (``merge``: state -> merged state), because the mean of the factors
    A and B is not the mean of the updates B @ A."""
    if not step_dirs:
        raise ValueError("average: no checkpoints to average")
    weights = [load_weights(d / "model.safetensors") for d in step_dirs]
    if any("lora_" in k for k in weights[0]):
        if merge is None:
            raise ValueError("average: LoRA checkpoints must be merged before averaging (pass merge=)")
        weights = [merge(w) for w in weights]
    keys = set(weights[0])
    for d, w in zip(step_dirs, weights):
        if set(w) != keys:
            raise ValueError(f"average: {d} has different parameters than {step_dirs[0]}")
    out = {}
    for k in weights[0]:
        if weights[0][k].is_floating_point():
            acc = sum(w[k].float() for w in weights) / len(weights)
            out[k] = acc.to(weights[0][k].dtype)
        else:
            out[k] = weights[-1][k].clone()
    return out


#: metric name -> (how to read it from metrics.yaml, True when higher is better)
BEST_BY = {
    "valid_loss": (lambda m: m.get("valid_loss"), False),
    "valid_cer": (lambda m: (m.get("valid_cer") or {}).get("overall"), False),
    "valid_r1": (lambda m: m.get("valid_r1_best"), True),
}


def select_for_average(ckpt_root: Path, last: int | None = None, best: int | None = None,
                       metric: str = "valid_loss") -> list[Path]:
    """The ``last`` newest checkpoints, or the ``best`` by a validation metric from their sidecars
    (``valid_r1``: dev YuBao R@1 at the best tracked layer, higher is better)."""
    dirs = list_checkpoints(ckpt_root)
    if metric not in BEST_BY:
        raise ValueError(f"average: unknown metric {metric!r}; choose from {sorted(BEST_BY)}")
    if last:
        chosen = dirs[-last:]
        n = last
    elif best:
        read, higher = BEST_BY[metric]
        scored = [(read(read_metrics(d)), d) for d in dirs]
        scored = [(v, d) for v, d in scored if v is not None]
        if not scored:
            raise ValueError(f"average --best: no checkpoint under {ckpt_root} has {metric} in metrics.yaml")
        chosen = [d for _, d in sorted(scored, key=lambda x: -x[0] if higher else x[0])[:best]]
        n = best
    else:
        raise ValueError("average: give --last N or --best N")
    if len(chosen) < n:
        log.warning("average: asked for %d checkpoints, %d available under %s", n, len(chosen), ckpt_root)
    if not chosen:
        raise ValueError(f"average: no checkpoints under {ckpt_root}")
    return chosen


def write_average(exp_dir: Path, last: int | None = None, best: int | None = None,
                  metric: str = "valid_loss") -> Path:
    chosen = select_for_average(exp_dir / "checkpoints", last, best, metric)
    require_one_run(chosen, read_metrics)
    weights = average_checkpoints(chosen, merge=lambda w: merged_weights(exp_dir, w))
    suffix = "" if last or metric == "valid_loss" else f"-{metric.removeprefix('valid_')}"
    out = exp_dir / (f"avg-last{last}.safetensors" if last else f"avg-best{best}{suffix}.safetensors")
    save_weights(out, weights, {"averaged": ",".join(d.name for d in chosen)})
    log.info("averaged %s -> %s", ", ".join(d.name for d in chosen), out)
    return out
