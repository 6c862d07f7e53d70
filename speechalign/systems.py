"""Whole systems side by side: one row each with what a user choosing between them asks first.

A system is described by the outputs the recipe stages already wrote: a CER report (``cer-<set>-<mode>.tsv``),
the YuBao tables of its encoder states (a ``retrieve --protocol yubao`` directory), the YuBao tables of the
cascade over its transcripts (a ``retrieve-text`` directory) and its training record (a speechalign
experiment dir, or the transformers peer's ``summary.json``). Any part may be missing (shown as ``n/a``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from speechalign.atomic import write_text
from speechalign.config import load_config, objective
from speechalign.decode.report import read_cer_table
from speechalign.retrieval.compare import best_run, describe_run, yubao_runs
from speechalign.train.ablation import checkpoint_metrics, training_minutes
from speechalign.tables import markdown, tsv

SPEC_KEYS = ("cer", "yubao", "cascade", "training")


@dataclass(frozen=True)
class SystemSpec:
    label: str
    cer: Path | None = None
    yubao: Path | None = None
    cascade: Path | None = None
    training: Path | None = None


def parse_spec(item: str) -> SystemSpec:
    """``LABEL:cer=TSV,yubao=DIR,cascade=DIR,training=EXP_OR_JSON`` (every key optional)."""
    # The label ends at the first ':' that starts a key=: labels may hold ':' and ',' themselves.
    m = re.match(r"^(.+?):(?=[a-z]+=|$)", item)
    if not m:
        raise ValueError(f"compare systems: {item!r} is not LABEL:key=path,... (keys: {', '.join(SPEC_KEYS)})")
    label, rest = m.group(1), item[m.end():]
    parts: dict[str, Path] = {}
    for field in filter(None, re.split(r",(?=[a-z]+=)", rest)):
        key, eq, value = field.partition("=")
        if not eq or key not in SPEC_KEYS:
            raise ValueError(f"compare systems: {label}: {field!r} is not one of {', '.join(k + '=PATH' for k in SPEC_KEYS)}")
        if key in parts:
            raise ValueError(f"compare systems: {label}: {key}= given twice")
        path = Path(value)
        if not path.exists():
            raise FileNotFoundError(f"compare systems: {label}: {key}={path} does not exist")
        parts[key] = path
    return SystemSpec(label, **parts)


def dialect_cer(path: Path, mandarin: str) -> tuple[float, float]:
    """(mean CER over the non-Mandarin varieties, each variety weighing the same; Mandarin CER)."""
    table = read_cer_table(path)
    dialects = [v for d, v in table.items() if d not in ("overall", mandarin)]
    if not dialects or mandarin not in table:
        raise ValueError(f"compare systems: {path} needs a {mandarin!r} column and at least one other variety")
    return sum(dialects) / len(dialects), table[mandarin]


def best_yubao(retrieval_dir: Path) -> tuple[float, str]:
    """The best mean off-diagonal R@1 % over every scoring mode, centering and layer, and where it is."""
    runs = yubao_runs(retrieval_dir)
    if not runs:
        raise ValueError(f"compare systems: {retrieval_dir} has no yubao-*.tsv tables")
    value, key, layer = best_run(runs)
    where = describe_run(key, layer)
    return value, where


def training_record(path: Path) -> tuple[int, float]:
    """(optimizer steps, training minutes) of a speechalign experiment dir (its last checkpoint's
    metrics.yaml: compute + data wait) or of a peer's summary.json (its measured wall time)."""
    if path.is_file():
        summary = json.loads(path.read_text(encoding="utf-8"))
        try:
            return int(summary["steps"]), float(summary["minutes"])
        except KeyError as e:
            raise ValueError(f"compare systems: {path}: no {e.args[0]!r} field (expected a peer summary.json)") from None
    last = checkpoint_metrics(path)[-1]
    return int(last["step"]), training_minutes(last)


HEADER = ["system", "mean dialect CER %", "Mandarin CER %", "YuBao R@1 % (embedding, best layer)",
          "YuBao R@1 % (cascade)", "training steps", "training minutes"]


def trained_for(training: Path | None) -> str:
    """" (not ASR-only: ...)" for a speechalign experiment trained with more than the ASR loss, else ""."""
    if training is None or not (training / "config.yaml").is_file():
        return ""
    trained = objective(load_config(training / "config.yaml"))
    return "" if trained == "ASR-only" else f" ({trained})"


def system_row(spec: SystemSpec, mandarin: str) -> list[str]:
    row = [spec.label + trained_for(spec.training)]
    if spec.cer:
        mean, mandarin_cer = dialect_cer(spec.cer, mandarin)
        row += [f"{mean:.1f}", f"{mandarin_cer:.1f}"]
    else:
        row += ["n/a", "n/a"]
    if spec.yubao:
        value, where = best_yubao(spec.yubao)
        row.append(f"{value:.1f} ({where})")
    else:
        row.append("n/a")
    row.append(f"{best_yubao(spec.cascade)[0]:.1f}" if spec.cascade else "n/a")
    if spec.training:
        steps, minutes = training_record(spec.training)
        row += [str(steps), f"{minutes:.1f}"]
    else:
        row += ["0", "0"]
    return row


def compare_systems(specs: list[SystemSpec], out: Path, title: str, mandarin: str = "Mandarin") -> Path:
    """Write ``out``.tsv and ``out``.md: one row per system, in the order given."""
    rows = [system_row(s, mandarin) for s in specs]
    write_text(out.with_suffix(".tsv"), tsv(HEADER, rows))
    md = (f"{title}\n\nMean dialect CER: every variety but {mandarin} weighs the same. YuBao R@1: mean off-diagonal, "
          "the embedding's best scoring mode, centering and layer; the cascade compares transcripts (TF-IDF over "
          "character n-grams). Training minutes: the trainer's own measure (speechalign: compute + data wait; "
          "the peer: wall time).\n\n"
          + markdown(HEADER, rows))
    write_text(out.with_suffix(".md"), md)
    return out.with_suffix(".md")
