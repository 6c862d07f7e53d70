"""Common Voice Chinese (zh-CN, zh-HK, zh-TW; also yue) via lhotse's recipe.

Layout: ``<corpus_dir>/<lang>/{train,dev,test}.tsv`` (Common Voice columns: client_id, path, sentence,
gender, age, accents, variant, ...) and ``<corpus_dir>/<lang>/clips/*.mp3``. Manifests are written per
language as ``commonvoice-<lang>_cuts_<split>.jsonl.gz``.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from lhotse import CutSet
from lhotse.recipes import prepare_commonvoice as lhotse_prepare_commonvoice

from data_prep.common import (PrepReport, cuts_from_lhotse, dialect_label, note_dropped, relabel_cuts, require_dir,
                              require_paths, run_lhotse_recipe, save_split)

LAYOUT = """  <corpus_dir>/<lang>/{train,dev,test}.tsv   (client_id, path, sentence, gender, age, accents, variant, ...)
  <corpus_dir>/<lang>/clips/*.mp3              for lang in zh-CN, zh-HK, zh-TW (or yue)"""
LANGUAGES = ("zh-CN", "zh-HK", "zh-TW")


def _tsv_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as f:
        return sum(1 for _ in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def prepare_commonvoice(corpus_dir: str | Path, output_dir: str | Path, languages=LANGUAGES,
                        splits=("train", "dev", "test"), num_jobs: int = 1) -> dict[str, dict[str, CutSet]]:
    corpus_dir = require_dir(corpus_dir, "commonvoice", LAYOUT)
    languages = [languages] if isinstance(languages, str) else list(languages)
    require_paths(corpus_dir, "commonvoice", LAYOUT,
                  *(f"{lang}/{s}.tsv" for lang in languages for s in splits), *(f"{lang}/clips" for lang in languages))
    labels = {lang: dialect_label("commonvoice", lang) for lang in languages}
    with tempfile.TemporaryDirectory() as scratch:  # lhotse insists on writing its own manifests
        manifests = run_lhotse_recipe("commonvoice", lhotse_prepare_commonvoice, corpus_dir, scratch, languages,
                                      list(splits), num_jobs)
    out = {}
    for lang in languages:
        name = f"commonvoice-{lang}"
        report = PrepReport(name)
        out[lang] = {}
        for split in splits:
            cuts = relabel_cuts(cuts_from_lhotse(manifests[lang], split), lambda c, lang=lang: labels[lang], report)
            note_dropped(report, split, _tsv_rows(corpus_dir / lang / f"{split}.tsv"),
                         len(manifests[lang][split]["recordings"]), "clip listed in the TSV but missing from clips/")
            out[lang][split] = save_split(cuts, output_dir, name, split, report)
        report.write(output_dir)
    return out


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("commonvoice", help="Common Voice zh-CN / zh-HK / zh-TW")
    p.add_argument("--corpus-dir", required=True, type=Path, help="the cv-corpus-<version> directory")
    p.add_argument("--output-dir", required=True, type=Path, help="where manifests and the prep report are written")
    p.add_argument("--languages", nargs="+", default=list(LANGUAGES), help=f"Common Voice locales (default: {' '.join(LANGUAGES)})")
    p.add_argument("--splits", nargs="+", default=["train", "dev", "test"], help="Common Voice splits to prepare")
    p.add_argument("--num-jobs", type=int, default=1, help="parallel jobs of the Lhotse recipe")
    p.set_defaults(func=lambda a: prepare_commonvoice(a.corpus_dir, a.output_dir, a.languages, a.splits, a.num_jobs))
