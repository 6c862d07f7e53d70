"""``speechalign report``: one markdown page from what the pipeline stages wrote to disk."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from speechalign.atomic import save_figure, write_text
from speechalign.decode.report import lm_effect_table, read_cer_table
from speechalign.models.experiment import list_checkpoints
from speechalign.retrieval.compare import TEXT_KEY, yubao_runs
from speechalign.train.arithmetic import describe as describe_arithmetic
from speechalign.train.checkpoint import read_metrics
from speechalign.tables import markdown

PAIR_OF_INTEREST = ("Cantonese", "Mandarin")


def training_curve(exp_dir: Path, out_png: Path) -> Path | None:
    """Loss and validation CER against steps, read from the TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(exp_dir / "tensorboard"))
    events.Reload()
    tags = events.Tags().get("scalars", [])
    if "train/loss" not in tags:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for tag in ("train/loss", "valid/loss"):
        if tag in tags:
            s = events.Scalars(tag)
            ax1.plot([e.step for e in s], [e.value for e in s], label=tag, marker="." if "valid" in tag else None)
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss per utterance")
    ax1.set_yscale("log")
    ax1.legend()
    cer = {t.split("/")[-1]: events.Scalars(t) for t in sorted(t for t in tags if t.startswith("valid/cer/"))}
    if max((len(s) for s in cer.values()), default=0) >= 2:
        for name, s in cer.items():
            ax2.plot([e.step for e in s], [e.value for e in s], marker="o", label=name)
        ax2.set_xlabel("step")
        ax2.set_ylabel("greedy CER (dev)")
        ax2.set_ylim(0, 1.05)
        ax2.legend(fontsize=7)
    elif cer:
        # One validation: a curve would be a single dot per dialect, so compare the dialects instead.
        names = list(cer)
        ax2.barh(names, [cer[n][-1].value for n in names], color="tab:blue")
        for i, n in enumerate(names):
            ax2.text(cer[n][-1].value, i, f" {cer[n][-1].value:.3f}", va="center", fontsize=8)
        ax2.set_xlim(0, 1.15)
        ax2.set_xlabel(f"greedy CER (dev) at step {cer[names[0]][-1].step}, the only validation")
    else:
        ax2.set_axis_off()
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=110)


def training_extent(exp_dir: Path) -> str | None:
    """How far training went, from the newest checkpoint's metrics; a time cap is named, because
    then the numbers below depend on the machine's speed."""
    step_dirs = list_checkpoints(exp_dir / "checkpoints") if (exp_dir / "checkpoints").is_dir() else []
    if not step_dirs:
        return None
    m = read_metrics(step_dirs[-1])
    step, planned = m.get("step"), m.get("max_steps")
    if m.get("stopped_by") == "max_minutes":
        extent = (f"Training stopped at step {step} of {planned}: the {m['max_minutes']:g}-minute cap "
                  "(`train.max_minutes`) ran out, so these results depend on this machine's speed.")
    else:
        extent = f"Trained {step} steps" + (f" of {planned} planned." if planned and planned != step else ".")
    if "arithmetic" in m:
        extent += (f" Arithmetic: {describe_arithmetic(m['arithmetic'])}; a run with the same corpus and these "
                   "settings gives the same numbers.")
    return extent


def headline_tables(decode_dir: Path, ret_dir: Path) -> str | None:
    """The headline numbers in one place (README copies this block as it is): CER per variety for every
    decode mode, and the mean off-diagonal R@1 of every YuBao-style matrix of the trained model."""
    cer = {p.stem.split("-", 2)[2]: read_cer_table(p) for p in sorted(decode_dir.glob("cer-*.tsv"))} \
        if decode_dir.is_dir() else {}
    parts = []
    if cer:
        varieties = sorted({v for t in cer.values() for v in t} - {"overall"}) + ["overall"]
        parts.append(markdown(["test CER %", *varieties],
                              [[mode, *(f"{t[v]:.2f}" if v in t else "n/a" for v in varieties)] for mode, t in cer.items()]))
    runs = yubao_runs(ret_dir / "trained") if (ret_dir / "trained").is_dir() else {}
    means = [[mode, str(layer), "dialect" if centered else "none", f"{r1:.2f}"]
             for (mode, centered), by_layer in sorted(runs.items()) if mode != TEXT_KEY[0]
             for layer, r1 in sorted(by_layer.items())]
    if means:
        parts.append(markdown(["YuBao-style matrix", "layer", "centering", "mean off-diagonal R@1 %"], means))
    return "\n".join(parts) if parts else None


def _read_tsv(path: Path) -> list[dict]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def retrieval_summary(ret_dir: Path) -> list[list[str]]:
    """One row per (source, protocol, centering): R@1 for the pair of interest and the mean."""
    rows = []
    for source_dir in sorted(p for p in ret_dir.iterdir() if p.is_dir()):
        for tsv in sorted(source_dir.glob("*-L*-mean*.tsv")):
            m = re.match(r"(pooled|seqsim|rerank)-L(\d+)-mean(-center)?(-procrustes)?\.tsv$", tsv.name)
            if not m:
                continue
            data = {(r["query"], r["gallery"]): r for r in _read_tsv(tsv)}
            pair = data.get(PAIR_OF_INTEREST)
            rows.append([source_dir.name, m.group(1), m.group(2),
                         "dialect" if m.group(3) else "none", "procrustes" if m.group(4) else "",
                         f"{float(pair['R@1']):.3f}" if pair else "", f"{float(data[('mean', 'mean')]['R@1']):.3f}",
                         f"{float(data[('mean', 'mean')]['MRR']):.3f}"])
    return rows


def best_layers(ret_dir: Path) -> list[list[str]]:
    rows = []
    for tsv in sorted(ret_dir.glob("*/sweep-*.tsv")):
        table = _read_tsv(tsv)
        for method in ("pooled", "seqsim"):
            pair = [r for r in table if r["method"] == method and (r["query"], r["gallery"]) == PAIR_OF_INTEREST]
            if pair:
                best = max(pair, key=lambda r: float(r["R@1"]))
                rows.append([tsv.parent.name, tsv.stem.replace("sweep-", ""), method, best["layer"],
                             f"{float(best['R@1']):.3f}"])
    return rows


def write_report(out_dir: str | Path, exp_dir: str | Path, retrieval_dir: str | Path, checkpoint: str = "latest") -> Path:
    out_dir, exp_dir, ret_dir = Path(out_dir), Path(exp_dir), Path(retrieval_dir)
    parts = ["# speechalign report", ""]
    if (out_dir / "retrieval.html").is_file():
        parts += ["Listen to the retrieval results: [retrieval.html](retrieval.html) (each query's top 5 with audio, "
                  "filters by source, layer and dialect pair).", ""]
    decode_dir = exp_dir / "decode" / checkpoint
    headline = headline_tables(decode_dir, ret_dir)
    if headline:
        parts += ["## Summary", "", headline]
    stats = out_dir / "stats.txt"
    if stats.is_file():
        parts += ["## Data", "", "```", stats.read_text(encoding="utf-8").rstrip(), "```", ""]
    curve = training_curve(exp_dir, out_dir / "training_curve.png") if (exp_dir / "tensorboard").is_dir() else None
    extent = training_extent(exp_dir)
    if curve or extent:
        parts += ["## Training", ""] + ([extent, ""] if extent else [])
        parts += [f"![training curve]({os.path.relpath(curve, out_dir)})", ""] if curve else []
    tables = sorted(decode_dir.glob("cer-*.md")) if decode_dir.is_dir() else []
    if tables:
        parts += ["## ASR: CER per dialect (test split)", ""]
        effect = lm_effect_table(decode_dir)
        if effect:   # its headings one level down, under this section's
            parts += ["\n".join("#" + ln if ln.startswith("#") else ln for ln in effect.splitlines()), ""]
        for t in tables:
            parts += [f"### {t.stem}", "", t.read_text(encoding="utf-8").rstrip(), ""]
    if ret_dir.is_dir():
        summary = retrieval_summary(ret_dir)
        if summary:
            parts += ["## Retrieval", "", f"R@1 for {PAIR_OF_INTEREST[0]} → {PAIR_OF_INTEREST[1]} and the mean over all "
                      "ordered variety pairs (top layer unless noted; chance ≈ 1/number of test sentences).", "",
                      markdown(["embeddings", "protocol", "layer", "centering", "map", "Cantonese→Mandarin R@1",
                                "mean R@1", "mean MRR"], summary)]
        layers = best_layers(ret_dir)
        if layers:
            parts += ["### Best layer (layer sweep)", "", markdown(["embeddings", "sweep", "method", "best layer",
                                                                  "Cantonese→Mandarin R@1"], layers)]
        for table in sorted(ret_dir.glob("trained/yubao-*.md")):
            parts += [f"### YuBao-style matrix: {table.stem}", "", table.read_text(encoding="utf-8").rstrip(), ""]
        for png in sorted(ret_dir.glob("*/yubao-*.png")) + sorted(ret_dir.glob("*/sweep-*.png")):
            parts += [f"![{png.parent.name} {png.stem}]({os.path.relpath(png, out_dir)})", ""]
    return write_text(out_dir / "REPORT.md", "\n".join(parts))

