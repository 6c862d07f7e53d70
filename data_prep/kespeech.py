"""KeSpeech (Mandarin and eight subdialects) via lhotse's recipe.

Layout: ``<corpus_dir>/Tasks/ASR/<part>/{wav.scp,text,utt2subdialect,utt2spk}`` for the parts
train_phase1, train_phase2, dev_phase1, dev_phase2, test; wav.scp paths are relative to corpus_dir.
"""

from __future__ import annotations

from pathlib import Path

from lhotse import CutSet
from lhotse.recipes import prepare_kespeech as lhotse_prepare_kespeech

from data_prep.common import (PrepReport, cuts_from_lhotse, dialect_label, relabel_cuts, require_dir,
                              require_paths, run_lhotse_recipe, save_split)

LAYOUT = """  <corpus_dir>/Audio/...  (paths as listed in wav.scp, relative to corpus_dir)
  <corpus_dir>/Tasks/ASR/{train_phase1,train_phase2,dev_phase1,dev_phase2,test}/
      wav.scp  text  utt2subdialect  utt2spk"""
PARTS = ("train_phase1", "train_phase2", "dev_phase1", "dev_phase2", "test")
# KeSpeech's own spellings -> our keys (the corpus writes e.g. "Lan-Yin"; accept common variants too)
SPELLINGS = {"lanyin": "Lan-Yin", "jianghuai": "Jiang-Huai", "jilu": "Ji-Lu", "jiaoliao": "Jiao-Liao",
             "mandarin": "Mandarin", "beijing": "Beijing", "southwestern": "Southwestern",
             "zhongyuan": "Zhongyuan", "northeastern": "Northeastern"}


def subdialect_label(name: str) -> str:
    key = SPELLINGS.get(name.replace("-", "").replace("_", "").replace(" ", "").lower())
    if key is None:
        raise ValueError(f"kespeech: unknown subdialect {name!r} in utt2subdialect; known: {sorted(set(SPELLINGS.values()))}")
    return dialect_label("kespeech", key)


def prepare_kespeech(corpus_dir: str | Path, output_dir: str | Path, dataset_parts: str | list[str] = "all",
                     num_jobs: int = 1) -> dict[str, CutSet]:
    corpus_dir = require_dir(corpus_dir, "kespeech", LAYOUT)
    parts = list(PARTS) if dataset_parts == "all" else ([dataset_parts] if isinstance(dataset_parts, str) else list(dataset_parts))
    require_paths(corpus_dir, "kespeech", LAYOUT,
                  *(f"Tasks/ASR/{p}/{f}" for p in parts for f in ("wav.scp", "text", "utt2subdialect", "utt2spk")))
    manifests = run_lhotse_recipe("kespeech", lhotse_prepare_kespeech, corpus_dir, None, parts, num_jobs)
    report, out = PrepReport("kespeech"), {}
    for split in manifests:
        # lhotse stores the subdialect as the supervision language
        cuts = relabel_cuts(cuts_from_lhotse(manifests, split), lambda c: subdialect_label(c.supervisions[0].language),
                            report, subdialect=lambda c: c.supervisions[0].language)
        out[split] = save_split(cuts, output_dir, "kespeech", split, report)
    report.write(output_dir)
    return out


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("kespeech", help="KeSpeech (Mandarin + 8 subdialects)")
    p.add_argument("--corpus-dir", required=True, type=Path, help="the extracted KeSpeech directory")
    p.add_argument("--output-dir", required=True, type=Path, help="where manifests and the prep report are written")
    p.add_argument("--parts", nargs="+", default=["all"], help=f"any of {PARTS} or all")
    p.add_argument("--num-jobs", type=int, default=1, help="parallel jobs of the Lhotse recipe")
    p.set_defaults(func=lambda a: prepare_kespeech(a.corpus_dir, a.output_dir, "all" if a.parts == ["all"] else a.parts,
                                                  a.num_jobs))
