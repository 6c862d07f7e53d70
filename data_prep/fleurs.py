"""FLEURS Mandarin (cmn_hans_cn) and Cantonese (yue_hant_hk) via lhotse's recipe.

Layout (as lhotse's downloader writes it): ``<corpus_dir>/<lang>/{train,dev,test}/<file>.wav`` and
``<corpus_dir>/metadata/<lang>/{train,dev,test}.tsv`` (prompt_id, file, raw text, normalized text,
phonemes, num_samples, gender). ``sentence_id`` = the FLEURS prompt id, shared across languages, so
the ``fleurs`` retrieval protocol can pair recordings of the same prompt.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from lhotse import CutSet
from lhotse.recipes import prepare_fleurs as lhotse_prepare_fleurs

from data_prep.common import (PrepReport, cuts_from_lhotse, dialect_label, relabel_cuts, require_dir, require_paths,
                              run_lhotse_recipe, save_split)

LAYOUT = """  <corpus_dir>/<lang>/{train,dev,test}/<file>.wav
  <corpus_dir>/metadata/<lang>/{train,dev,test}.tsv  (prompt_id, file, raw text, text, phonemes, num_samples, gender)"""
LANGUAGES = ("cmn_hans_cn", "yue_hant_hk")


def prompt_id(cut) -> str:
    """lhotse names FLEURS supervisions ``<prompt id>_<occurrence>_<file>``."""
    return cut.supervisions[0].id.split("_", 1)[0]


def prepare_fleurs(corpus_dir: str | Path, output_dir: str | Path, languages=LANGUAGES,
                   num_jobs: int = 1) -> dict[str, dict[str, CutSet]]:
    corpus_dir = require_dir(corpus_dir, "fleurs", LAYOUT)
    languages = [languages] if isinstance(languages, str) else list(languages)
    require_paths(corpus_dir, "fleurs", LAYOUT, *(f"{lang}/{s}" for lang in languages for s in ("train", "dev", "test")),
                  *(f"metadata/{lang}/{s}.tsv" for lang in languages for s in ("train", "dev", "test")))
    labels = {lang: dialect_label("fleurs", lang) for lang in languages}
    with tempfile.TemporaryDirectory() as scratch:
        manifests = run_lhotse_recipe("fleurs", lhotse_prepare_fleurs, corpus_dir, scratch, languages, num_jobs)
    out = {}
    for lang in languages:
        name = f"fleurs-{lang}"
        report = PrepReport(name)
        out[lang] = {}
        for split in ("train", "dev", "test"):
            cuts = cuts_from_lhotse(manifests[lang], split)
            for cut in cuts:  # lhotse's text is FLEURS' lower-cased normalization; the raw text is the transcript
                sup = cut.supervisions[0]
                sup.text = (sup.custom or {}).get("raw_text") or sup.text
            cuts = relabel_cuts(cuts, lambda c, lang=lang: labels[lang], report, sentence_id=prompt_id)
            out[lang][split] = save_split(cuts, output_dir, name, split, report)
        report.write(output_dir)
    return out


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("fleurs", help="FLEURS cmn_hans_cn / yue_hant_hk")
    p.add_argument("--corpus-dir", required=True, type=Path, help="the FLEURS directory (one subdirectory per language)")
    p.add_argument("--output-dir", required=True, type=Path, help="where manifests and the prep report are written")
    p.add_argument("--languages", nargs="+", default=list(LANGUAGES), help=f"FLEURS languages (default: {' '.join(LANGUAGES)})")
    p.add_argument("--num-jobs", type=int, default=1, help="parallel jobs of the Lhotse recipe")
    p.set_defaults(func=lambda a: prepare_fleurs(a.corpus_dir, a.output_dir, a.languages, a.num_jobs))
