"""Real Taiwanese Hokkien read speech (evaluation only; never train on it).

Layout (``sentences.tsv``: id, audio, hokkien_hanzi, hokkien_tailo, mandarin, duration_s,
mandarin_audio; ``words.tsv``: id, audio, hanzi, tailo, duration_s)::

    <corpus_dir>/sNNN.flac  wNNN.flac  mandarin_tts/mNNN.flac  sentences.tsv  words.tsv

Writes ``tw-hokkien_cuts_test.jsonl.gz`` (Hokkien sentences + Mandarin TTS of their translations,
sharing ``sentence_id`` NNN: a parallel retrieval set) and ``tw-hokkien_cuts_words.jsonl.gz``
(headwords, same sentence_id as their sentence). Audio stays where it is.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lhotse import CutSet

from data_prep.common import (PrepReport, check_audio, dialect_label, make_cut, require_dir, require_paths,
                              save_split)

LAYOUT = """  <corpus_dir>/sentences.tsv  (id, audio, hokkien_hanzi, hokkien_tailo, mandarin, duration_s, mandarin_audio)
  <corpus_dir>/words.tsv      (id, audio, hanzi, tailo, duration_s)
  <corpus_dir>/sNNN.flac, wNNN.flac, mandarin_tts/mNNN.flac"""


def _rows(path: Path, required: tuple[str, ...]) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        return list(reader)


def prepare_tw_hokkien(corpus_dir: str | Path, output_dir: str | Path, include_words: bool = True) -> dict[str, CutSet]:
    corpus_dir = require_dir(corpus_dir, "tw-hokkien", LAYOUT)
    require_paths(corpus_dir, "tw-hokkien", LAYOUT, "sentences.tsv")
    report = PrepReport("tw-hokkien")
    hokkien, mandarin = dialect_label("tw-hokkien", "nan"), dialect_label("tw-hokkien", "cmn")
    test = []
    for row in _rows(corpus_dir / "sentences.tsv", ("id", "audio", "hokkien_hanzi", "mandarin")):
        sid = row["id"].lstrip("s")
        rec = check_audio(corpus_dir / row["audio"], report, recording_id=row["id"])
        if rec is not None:
            cut = make_cut(rec, row["hokkien_hanzi"], hokkien, report, sentence_id=sid, site="tw-hokkien",
                           subgroup="nan", kind="sentence", tailo=row.get("hokkien_tailo"),
                           translation=row["mandarin"] or None)
            test += [cut] if cut else []
        if not row["mandarin"] or not row.get("mandarin_audio"):
            report.skip(row["id"], "no-translation: no Mandarin translation, so no Mandarin TTS cut")
            continue
        tts = check_audio(corpus_dir / row["mandarin_audio"], report, recording_id=f"m{sid}")
        if tts is not None:
            cut = make_cut(tts, row["mandarin"], mandarin, report, sentence_id=sid, site="mandarin-tts",
                           subgroup="cmn", kind="tts")
            test += [cut] if cut else []
    out = {"test": save_split(test, output_dir, "tw-hokkien", "test", report)}
    if include_words and (corpus_dir / "words.tsv").is_file():
        words = []
        for row in _rows(corpus_dir / "words.tsv", ("id", "audio", "hanzi")):
            rec = check_audio(corpus_dir / row["audio"], report, recording_id=row["id"])
            if rec is not None:
                cut = make_cut(rec, row["hanzi"], hokkien, report, sentence_id=row["id"].lstrip("w"),
                               site="tw-hokkien-words", subgroup="nan", kind="word", tailo=row.get("tailo"))
                words += [cut] if cut else []
        out["words"] = save_split(words, output_dir, "tw-hokkien", "words", report)
    report.write(output_dir)
    return out


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("tw-hokkien", help="real Taiwanese Hokkien read speech (evaluation only)")
    p.add_argument("--corpus-dir", required=True, type=Path, help="tw-hokkien root (the layout is named in the error when it does not match)")
    p.add_argument("--output-dir", required=True, type=Path, help="where manifests and the prep report are written")
    p.add_argument("--no-words", action="store_true", help="skip the headword recordings")
    p.set_defaults(func=lambda a: prepare_tw_hokkien(a.corpus_dir, a.output_dir, include_words=not a.no_words))
