"""lan-lai (咱來學臺灣閩南語, section 03): Taiwanese Hokkien sentences read by course speakers, with
Han characters, Tâi-lô romanization and a Mandarin translation — training data for Hokkien ASR.

Layout::

    <corpus_dir>/csv/3-N.csv   header: Iah, Tsiunn, Ho, Hanji, Lomaji, Huagi, Imtong (3-2.csv: ImTong)
    <corpus_dir>/mp3/03/0N/<Imtong>

Everything goes to ``lan-lai_cuts_train.jsonl.gz``; pass the evaluation manifests (e.g. tw-hokkien's
test) as ``exclude_texts_from`` so sentences that are also test sentences are dropped. Per cut:
``sentence_id`` = audio file stem, ``site`` = lan-lai, ``subgroup`` = min, ``translation`` = Huagi,
``romanization`` = Lomaji, ``raw_text`` = Hanji as written; speakers are not identified. Text
cleaning and decoded durations as in goo-gi.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from lhotse import CutSet

from data_prep.common import (PrepReport, add_training_corpus_cli, clean_transcript, decoded_recordings, dialect_label,
                              make_cut, note_unknown_spellings, require_dir, save_training_corpus)

CORPUS = "lan-lai"
LAYOUT = """  <corpus_dir>/csv/3-1.csv, 3-2.csv  (header: Iah, Tsiunn, Ho, Hanji, Lomaji, Huagi, Imtong or ImTong)
  <corpus_dir>/mp3/03/01/<Imtong>, mp3/03/02/<Imtong>"""
REQUIRED = ("Hanji", "Lomaji", "Huagi")
AUDIO_COLUMNS = ("Imtong", "ImTong")


def read_rows(path: Path) -> list[dict]:
    """Rows of one csv with the audio column named ``Imtong``; missing columns name the file."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        audio = next((c for c in AUDIO_COLUMNS if c in header), None)
        missing = [c for c in REQUIRED if c not in header] + ([] if audio else ["Imtong (or ImTong)"])
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {header}")
        return [{**row, "Imtong": (row[audio] or "").strip()} for row in reader]


def prepare_lan_lai(corpus_dir: str | Path, output_dir: str | Path, exclude_texts_from=()) -> dict[str, CutSet]:
    """Write ``lan-lai_cuts_train.jsonl.gz`` (minus texts of ``exclude_texts_from``) and the report."""
    corpus_dir = require_dir(corpus_dir, CORPUS, LAYOUT).resolve()
    csvs = sorted((corpus_dir / "csv").glob("3-*.csv"))
    if not csvs:
        raise FileNotFoundError(f"{CORPUS}: no csv/3-*.csv in {corpus_dir}; expected layout:\n{LAYOUT}")
    report = PrepReport(CORPUS)
    rows = []
    for path in csvs:
        chapter = corpus_dir / "mp3" / "03" / f"{int(path.stem.split('-')[1]):02d}"
        for line_no, row in enumerate(read_rows(path), 2):
            if not row["Imtong"]:
                report.skip(f"{path}:{line_no}", "no-audio: empty Imtong field")
                continue
            rows.append((chapter / row["Imtong"], row))
    stems = Counter(Path(r["Imtong"]).stem for _, r in rows)
    if dup := [s for s, n in stems.items() if n > 1]:
        raise ValueError(f"{CORPUS}: audio file(s) named by more than one csv row: {dup[:5]}")
    recordings = decoded_recordings([(audio, f"{CORPUS}_{audio.stem}") for audio, _ in rows], report)
    label, cuts, unknown = dialect_label(CORPUS, "nan"), [], Counter()
    for audio, row in rows:
        rec = recordings.get(f"{CORPUS}_{audio.stem}")
        if rec is None:
            continue
        text, left = clean_transcript(row["Hanji"] or "")
        unknown.update(left)
        cut = make_cut(rec, text, label, report, sentence_id=audio.stem, site=CORPUS, subgroup="min",
                       translation=(row["Huagi"] or "").strip() or None,
                       romanization=(row["Lomaji"] or "").strip() or None)
        if cut is not None:
            cut.supervisions[0].custom["raw_text"] = row["Hanji"]
            cuts.append(cut)
    note_unknown_spellings(report, unknown)
    return save_training_corpus(cuts, output_dir, CORPUS, report, exclude_texts_from)


def add_cli(subparsers) -> None:
    add_training_corpus_cli(subparsers, CORPUS, "lan-lai: Taiwanese Hokkien course sentences (training data)",
                            "csv/, mp3/03/", prepare_lan_lai)
