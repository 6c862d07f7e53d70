"""Your own data: a TSV listing audio files with transcripts and dialect labels.

Layout: ``<corpus_dir>/<split>.tsv`` for each split (e.g. train.tsv, dev.tsv, test.tsv), with a
header row and the columns ``audio`` (path relative to the TSV, or absolute), ``text`` and
``dialect``; optional columns ``id``, ``speaker``, ``sentence_id``, ``site``, ``subgroup``,
``translation``. Any label is accepted as dialect (it becomes the supervision language).
"""

from __future__ import annotations

import csv
from pathlib import Path

from lhotse import CutSet

from data_prep.common import PrepReport, check_audio, make_cut, require_dir, save_split

LAYOUT = """  <corpus_dir>/train.tsv, dev.tsv, test.tsv (any subset; header row)
  columns: audio, text, dialect [, id, speaker, sentence_id, site, subgroup, translation]"""
REQUIRED = ("audio", "text", "dialect")
OPTIONAL = ("sentence_id", "site", "subgroup", "translation")


def prepare_custom(corpus_dir: str | Path, output_dir: str | Path, corpus: str = "custom") -> dict[str, CutSet]:
    corpus_dir = require_dir(corpus_dir, corpus, LAYOUT)
    tsvs = sorted(corpus_dir.glob("*.tsv"))
    if not tsvs:
        raise FileNotFoundError(f"{corpus}: no *.tsv in {corpus_dir}; expected layout:\n{LAYOUT}")
    report = PrepReport(corpus)
    result = {}
    for tsv in tsvs:
        split = tsv.stem
        cuts = []
        with tsv.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{tsv}: missing column(s) {missing}; header is {reader.fieldnames}")
            for line_no, row in enumerate(reader, 2):
                audio = Path(row["audio"] or "")
                audio = audio if audio.is_absolute() else tsv.parent / audio
                rec_id = row.get("id") or f"{split}-{audio.stem}"
                recording = check_audio(audio, report, recording_id=rec_id)
                if recording is None:
                    continue
                cut = make_cut(recording, row["text"] or "", row["dialect"], report,
                               speaker=row.get("speaker") or None,
                               **{k: row.get(k) or None for k in OPTIONAL})
                if cut is not None:
                    cuts.append(cut)
        result[split] = save_split(cuts, output_dir, corpus, split, report)
    report.write(output_dir)
    return result


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("custom", help="your own data: <split>.tsv files with audio, text, dialect")
    p.add_argument("--corpus-dir", required=True, type=Path, help="directory with train.tsv/dev.tsv/test.tsv (audio, text, dialect columns)")
    p.add_argument("--output-dir", required=True, type=Path, help="where manifests and the prep report are written")
    p.add_argument("--name", default="custom", help="corpus name used in manifest file names")
    p.set_defaults(func=lambda a: prepare_custom(a.corpus_dir, a.output_dir, corpus=a.name))
