"""``speechalign ablation``: one row per training run, from what each experiment dir holds.

A row is a run's last validation (dev YuBao R@1 at the configured layers, from its checkpoint's
``metrics.yaml``), its per-variety CER from a decode report of the dev split, its steps and its training
minutes (compute + data wait, as the trainer measured them), and the config levers it was trained with.
``DIR@CHECKPOINT`` reads the decode report of another checkpoint of the run (e.g. ``wise-decoder-0.7``, weights
made after training), whose name is then the row's guard.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from speechalign.config import load_config, training_data
from speechalign.atomic import write_text
from speechalign.decode.report import read_cer_table
from speechalign.models.experiment import list_checkpoints
from speechalign.tables import markdown, tsv


def levers(exp_dir: Path) -> dict[str, str]:
    """What a run trained and with which objective, from its resolved config."""
    cfg = load_config(exp_dir / "config.yaml")
    m, o = cfg.model, cfg.optim
    memory = m.whisper.length_mode if m.encoder == "whisper" else "-"
    if m.encoder == "whisper" and m.whisper.tail_seconds:
        memory += f" + {m.whisper.tail_seconds:g} s silence"
    if cfg.data.pack.window:
        pack = cfg.data.pack
        memory += f", packed {pack.window:g} s ({pack.group}, {pack.single_share:.0%} single" + (
            f", {pack.timestamp_share:.0%} timestamped" if pack.timestamp_share else "") + (
            f", {'+'.join(pack.apart)} apart" if pack.apart else "") + ")"
    targets = "translation (not ASR-only)" if m.decoder.targets == "translation" else "transcript"
    if m.align.kind != "none":
        targets += (f" + {m.align.kind} alignment L{m.align.layer} x{m.align.weight:g}, k={cfg.data.parallel} "
                    "(not ASR-only)")
    if m.decoder.prompt == "variety":
        targets += ", variety prompt"
    if m.decoder.pretrained and m.decoder.train_vocab == "full":
        targets += ", full softmax"
    return {"targets": targets,
            "trained": f"LoRA r{m.lora.rank}" if m.lora.rank else f"layers {m.freeze.first_layers}+ in full",
            "guard": m.guard.kind if m.guard.kind == "none" else f"{m.guard.kind} {m.guard.weight:g}",
            "loss": f"{m.ctc_weight:g}" + _ctc_encoder_grad(m) + f" / {m.decoder.label_smoothing:g} / {m.decoder.dropout:g}",
            "lr": f"{o.encoder_lr or o.lr:g} / {o.decoder_lr or o.lr:g}", "memory": memory,
            "data": training_data(cfg) + "".join(f", {v} x{n}" for v, n in sorted(cfg.data.oversample.items()))}


def _ctc_encoder_grad(m) -> str:
    r = m.ctc_encoder_grad_ramp
    if r.to is not None:
        return f" (encoder x{m.ctc_encoder_grad:g} -> x{r.to:g} over steps {r.start}-{r.end})"
    return f" (encoder x{m.ctc_encoder_grad:g})" if m.ctc_encoder_grad != 1 else ""


def checkpoint_metrics(exp_dir: Path) -> list[dict]:
    """Every checkpoint's metrics.yaml, oldest first."""
    steps = [d for d in list_checkpoints(exp_dir / "checkpoints") if (d / "metrics.yaml").is_file()]
    if not steps:
        raise FileNotFoundError(f"{exp_dir} has no checkpoints with metrics.yaml")
    return [yaml.safe_load((d / "metrics.yaml").read_text(encoding="utf-8")) for d in steps]


def training_minutes(metrics: dict) -> float:
    """Compute + data wait, as the trainer measured them (validation and saving left out)."""
    return (metrics.get("train_compute_s", 0.0) + metrics.get("train_data_wait_s", 0.0)) / 60


def run_row(exp_dir: Path, cer_name: str) -> dict:
    exp_dir, _, checkpoint = str(exp_dir).partition("@")
    exp_dir = Path(exp_dir)
    metrics = checkpoint_metrics(exp_dir)
    last = metrics[-1]
    validated = [m for m in metrics if "valid_r1" in m]
    r1 = validated[-1]["valid_r1"] if validated else {}
    cer_path = exp_dir / "decode" / (f"{checkpoint}/{Path(cer_name).name}" if checkpoint else cer_name)
    cer = read_cer_table(cer_path) if cer_path.is_file() else {}
    minutes = training_minutes(last)
    row = {"name": exp_dir.name, **levers(exp_dir), "steps": last["step"], "minutes": minutes, "r1": r1,
           "step_s": 60 * minutes / last["step"] if last["step"] else None,
           "audio_rate": last["train_audio_s"] / (60 * minutes) if minutes and "train_audio_s" in last else None,
           "r1_step": validated[-1]["valid_step"] if validated else None, "cer": cer}
    if checkpoint:
        row["name"] += f" @ {checkpoint}"
        row["guard"] = checkpoint if row["guard"] == "none" else f"{row['guard']}, {checkpoint}"
    return row


def _r1_cell(row: dict, layer: int) -> str:
    """The R@1 at ``layer``, with its step when the run was last validated before its last checkpoint."""
    if layer not in row["r1"]:
        return "n/a"
    return f"{row['r1'][layer]:.1f}" + (f" (step {row['r1_step']})" if row["r1_step"] != row["steps"] else "")


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def ablation_table(exp_dirs: list[Path], cer_name: str, out: Path, order: list[str] | None = None) -> Path:
    """Markdown and TSV of the runs side by side; ``cer_name`` is a decode report under each run's
    ``decode/`` (e.g. ``avg-last3/cer-goo-gi_dev-attention_beam.tsv``)."""
    rows = [run_row(Path(e), cer_name) for e in exp_dirs]
    layers = sorted({k for r in rows for k in r["r1"]})
    dialects = [d for d in order or [] if any(d in r["cer"] for r in rows)]
    dialects += sorted({d for r in rows for d in r["cer"]} - set(dialects) - {"overall"}) + ["overall"]
    header = ["run", "targets", "trained", "guard", "CTC weight / smoothing / decoder dropout",
              "lr (encoder / decoder)", "memory", "data",
              *(f"R@1 L{k}" for k in layers), *dialects, "steps", "minutes", "s / step", "audio s / s"]
    lines = []
    for r in rows:
        lines.append([r["name"], r["targets"], r["trained"], r["guard"], r["loss"], r["lr"], r["memory"], r["data"],
                      *(_r1_cell(r, k) for k in layers),
                      *(f"{r['cer'][d]:.1f}" if d in r["cer"] else "n/a" for d in dialects),
                      str(r["steps"]), f"{r['minutes']:.1f}", _number(r["step_s"], 2), _number(r["audio_rate"], 1)])
    write_text(out.with_suffix(".tsv"), tsv(header, lines))
    md = (f"Runs side by side: dev YuBao-protocol SeqSim R@1 % (mean off-diagonal, at each run's last validation), "
          f"CER % per variety from `{cer_name}`, training steps and minutes (compute + data wait), seconds per step "
          f"and audio seconds trained per second (n/a: a run from before the trainer counted its audio).\n\n"
          + markdown(header, lines))
    write_text(out.with_suffix(".md"), md)
    return out.with_suffix(".md")
