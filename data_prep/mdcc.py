"""MDCC, the Multi-Domain Cantonese Corpus, via lhotse's recipe.

Layout: ``<corpus_dir>/audio/*.wav``, ``<corpus_dir>/cnt_asr_{train,valid,test}_metadata.csv``
(``audio_path,text_path,gender,duration``) and the transcript files the CSVs point to.
"""

from __future__ import annotations

from pathlib import Path

from lhotse import CutSet
from lhotse.recipes import prepare_mdcc as lhotse_prepare_mdcc

from data_prep.common import (PrepReport, cuts_from_lhotse, dialect_label, relabel_cuts, require_dir,
                              require_paths, run_lhotse_recipe, save_split)

LAYOUT = """  <corpus_dir>/audio/*.wav
  <corpus_dir>/cnt_asr_{train,valid,test}_metadata.csv  (audio_path,text_path,gender,duration)
  <corpus_dir>/<text_path> transcript files"""
PARTS = ("train", "valid", "test")


def prepare_mdcc(corpus_dir: str | Path, output_dir: str | Path, dataset_parts: str | list[str] = "all") -> dict[str, CutSet]:
    corpus_dir = require_dir(corpus_dir, "mdcc", LAYOUT)
    parts = list(PARTS) if dataset_parts == "all" else ([dataset_parts] if isinstance(dataset_parts, str) else list(dataset_parts))
    require_paths(corpus_dir, "mdcc", LAYOUT, "audio", *(f"cnt_asr_{p}_metadata.csv" for p in parts))
    manifests = run_lhotse_recipe("mdcc", lhotse_prepare_mdcc, corpus_dir, parts)
    report, out = PrepReport("mdcc"), {}
    label = dialect_label("mdcc", "yue")
    for split in manifests:
        cuts = relabel_cuts(cuts_from_lhotse(manifests, split), lambda c: label, report)
        out[split] = save_split(cuts, output_dir, "mdcc", split, report)
    report.write(output_dir)
    return out


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("mdcc", help="MDCC (Cantonese)")
    p.add_argument("--corpus-dir", required=True, type=Path, help="the extracted MDCC directory")
    p.add_argument("--output-dir", required=True, type=Path, help="where manifests and the prep report are written")
    p.add_argument("--parts", nargs="+", default=["all"], help=f"any of {PARTS} or all")
    p.set_defaults(func=lambda a: prepare_mdcc(a.corpus_dir, a.output_dir, "all" if a.parts == ["all"] else a.parts))
