"""kasu100 (詔安客語100句): 324 clips of Yunlin Zhao'an Hakka everyday phrases with Mandarin translations
and romanization, from the oikasu1/kasu100 flashcards — training data for Zhao'an Hakka (goo-gi's z site).

Layout::

    <corpus_dir>/data.js    JS template string ``textData``: a header line, then tab-separated lines
                            [class] [front] [back] [audio] [pinyin]
    <corpus_dir>/kNNN.mp3   44.1 kHz stereo MP3 (downmixed and resampled to 16 kHz when loaded)

Everything goes to ``kasu100_cuts_train.jsonl.gz``; pass the evaluation manifests as ``exclude_texts_from``
(one phrase, 請坐, equals a goo-gi sentence). Per cut: ``sentence_id`` = clip stem, ``site`` = kasu100,
``variety`` = zhaoan, ``subgroup`` = hak, ``translation`` = back, ``romanization`` = pinyin, ``raw_text`` =
front as written; speakers are not identified. The front interleaves Private Use Area characters (a ruby
font's pronunciation glyphs): :func:`speechalign.text.normalize` deletes them (category Co) with the
other C* characters, and the ``[...]`` marks of substituted words are punctuation to it. Each unit's
review lesson ``00百句`` re-lists clips of its topic lessons, sometimes with a longer phrase than the clip
holds (k214 is 剪刀, listed there as 剪刀、石頭、布): per clip the topic lesson's line is kept, and every
other line naming the clip is a counted ``duplicate`` skip.
"""

from __future__ import annotations

import re
from pathlib import Path

from lhotse import CutSet

from data_prep.common import (PrepReport, add_training_corpus_cli, decoded_recordings, dialect_label, make_cut,
                              require_dir, require_paths, save_training_corpus)
from speechalign.text import normalize

CORPUS = "kasu100"
VARIETY = "zhaoan"
LAYOUT = """  <corpus_dir>/data.js   (textData = `header [class] [front] [back] [audio] [pinyin], then tab-separated lines`)
  <corpus_dir>/kNNN.mp3"""
COLUMNS = ("[class]", "[front]", "[back]", "[audio]", "[pinyin]")
_TEXT_DATA = re.compile(r"\btextData\s*=\s*`([^`]*)`")


def read_cards(path: Path) -> list[dict]:
    """The cards of ``textData`` as dicts (class, front, back, audio, pinyin, line = line in data.js)."""
    source = path.read_text(encoding="utf-8-sig")
    m = _TEXT_DATA.search(source)
    if m is None:
        raise ValueError(f"{path}: no template string textData = `...`; expected layout:\n{LAYOUT}")
    first_line = source[:m.start(1)].count("\n") + 1
    lines = [(first_line + i, line) for i, line in enumerate(m.group(1).split("\n")) if line.strip()]
    if not lines or tuple(c.strip() for c in lines[0][1].split("\t")) != COLUMNS:
        raise ValueError(f"{path}: textData header is {lines[0][1] if lines else ''!r}, expected "
                         f"{chr(9).join(COLUMNS)!r}")
    cards = []
    for line_no, line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise ValueError(f"{path}:{line_no}: expected {len(COLUMNS)} tab-separated fields "
                             f"{' '.join(COLUMNS)}, got {len(fields)}: {line!r}")
        cards.append({"line": line_no, **{c.strip("[]"): f.strip() for c, f in zip(COLUMNS, fields)}})
    return cards


def _is_review(card: dict) -> bool:
    """A card of a unit's review lesson (class ``一、問好 00百句``), which re-lists topic-lesson clips."""
    parts = card["class"].split()
    return bool(parts) and parts[-1].startswith("00")


def one_card_per_clip(cards: list[dict], report: PrepReport) -> list[dict]:
    """The card kept per clip (topic lesson first, then file order); the others are counted skips, and
    clips whose listings disagree on the normalized text are named in a note."""
    by_clip: dict[str, list[dict]] = {}
    for card in cards:
        by_clip.setdefault(card["audio"], []).append(card)
    kept, differing = [], []
    for clip, listed in by_clip.items():
        best, *others = sorted(listed, key=lambda c: (_is_review(c), c["line"]))
        kept.append(best)
        for other in others:
            report.skip(f"data.js:{other['line']}", f"duplicate: {clip} is also listed at data.js:{best['line']} "
                                                    "(that line is kept)")
        texts = {normalize(c["front"]) for c in listed}
        if len(texts) > 1:
            differing.append(f"{clip} (kept {normalize(best['front'])!r}; also "
                             + ", ".join(repr(t) for t in sorted(texts - {normalize(best['front'])})) + ")")
    if differing:
        report.note(f"{len(differing)} clip(s) listed with different texts; the topic lesson's is kept: "
                    + ", ".join(differing))
    return sorted(kept, key=lambda c: c["line"])


def prepare_kasu100(corpus_dir: str | Path, output_dir: str | Path, exclude_texts_from=()) -> dict[str, CutSet]:
    """Write ``kasu100_cuts_train.jsonl.gz`` (minus texts of ``exclude_texts_from``) and the report."""
    corpus_dir = require_dir(corpus_dir, CORPUS, LAYOUT).resolve()
    require_paths(corpus_dir, CORPUS, LAYOUT, "data.js")
    report = PrepReport(CORPUS)
    cards = []
    for card in read_cards(corpus_dir / "data.js"):
        if card["audio"]:
            cards.append(card)
        else:
            report.skip(f"data.js:{card['line']}", "no-audio: empty [audio] field")
    cards = one_card_per_clip(cards, report)
    items = [(corpus_dir / c["audio"], f"{CORPUS}_{Path(c['audio']).stem}") for c in cards]
    recordings = decoded_recordings(items, report)
    label, cuts = dialect_label(CORPUS, VARIETY), []
    for card, (audio, rec_id) in zip(cards, items):
        rec = recordings.get(rec_id)
        if rec is None:
            continue
        cut = make_cut(rec, card["front"], label, report, sentence_id=audio.stem, site=CORPUS, subgroup="hak",
                       variety=VARIETY, translation=card["back"] or None, romanization=card["pinyin"] or None)
        if cut is not None:
            cuts.append(cut)
    return save_training_corpus(cuts, output_dir, CORPUS, report, exclude_texts_from)


def add_cli(subparsers) -> None:
    add_training_corpus_cli(subparsers, CORPUS, "kasu100: Zhao'an Hakka everyday phrases with Mandarin (training data)",
                            "data.js, kNNN.mp3", prepare_kasu100)
