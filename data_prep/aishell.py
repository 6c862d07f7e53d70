"""AISHELL-1 (Mandarin) via lhotse's recipe.

Layout: ``<corpus_dir>/data_aishell/wav/{train,dev,test}/<speaker>/<utt>.wav`` and
``<corpus_dir>/data_aishell/transcript/aishell_transcript_v0.8.txt`` (``<utt> <words separated by spaces>``).
"""

from __future__ import annotations

from pathlib import Path

from lhotse import CutSet
from lhotse.recipes import prepare_aishell as lhotse_prepare_aishell

from data_prep.common import (PrepReport, cuts_from_lhotse, dialect_label, note_dropped, relabel_cuts, require_dir,
                              require_paths, run_lhotse_recipe, save_split)

LAYOUT = """  <corpus_dir>/data_aishell/wav/{train,dev,test}/<speaker>/<utt>.wav
  <corpus_dir>/data_aishell/transcript/aishell_transcript_v0.8.txt"""


def prepare_aishell(corpus_dir: str | Path, output_dir: str | Path) -> dict[str, CutSet]:
    corpus_dir = require_dir(corpus_dir, "aishell", LAYOUT)
    require_paths(corpus_dir, "aishell", LAYOUT, "data_aishell/wav", "data_aishell/transcript/aishell_transcript_v0.8.txt")
    manifests = run_lhotse_recipe("aishell", lhotse_prepare_aishell, corpus_dir, None)
    report, out = PrepReport("aishell"), {}
    label = dialect_label("aishell", "zh")
    for split in manifests:
        cuts = relabel_cuts(cuts_from_lhotse(manifests, split), lambda c: label, report)
        wavs = sum(1 for _ in (corpus_dir / "data_aishell" / "wav" / split).rglob("*.wav"))
        note_dropped(report, split, wavs, len(manifests[split]["recordings"]), "audio without a transcript line")
        out[split] = save_split(cuts, output_dir, "aishell", split, report)
    report.write(output_dir)
    return out


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("aishell", help="AISHELL-1 (Mandarin)")
    p.add_argument("--corpus-dir", required=True, type=Path, help="the extracted AISHELL-1 directory (holding data_aishell/)")
    p.add_argument("--output-dir", required=True, type=Path, help="where manifests and the prep report are written")
    p.set_defaults(func=lambda a: prepare_aishell(a.corpus_dir, a.output_dir))
