"""foochow-idioms (福州話熟語大全): 519 Fuzhou Eastern Min proverbs and idioms read by one speaker, from
the MindongLab/foochow-idioms app — training data for Eastern Min (goo-gi's Matsu site is the same language).

Layout::

    <corpus_dir>/offline_api/api/s_<id>.json   {"_id", "field_text", "field_audio": "<uuid>.wma", ...}
    <corpus_dir>/www/assets/audio/<uuid>.mp3   (the MP3 of the same stem; the WMA files are not needed)

Everything goes to ``foochow-idioms_cuts_train.jsonl.gz``; pass the evaluation manifests (e.g. goo-gi's
test) as ``exclude_texts_from`` so sentences that are also test sentences are dropped. Per cut:
``sentence_id`` = ``_id``, ``site`` = foochow-idioms, ``variety`` = fuzhou, ``subgroup`` = min, speaker
``foochow-idioms`` (one reader), ``raw_text`` = ``field_text`` as written; there is no Mandarin translation
of whole sentences. Text cleaning as in goo-gi (``clean_transcript``): ideographic description sequences
like ``{⿰扌马}`` become their encoded character, parenthesized puns (``荒唐（方肠）``) are dropped. Durations
are decoded ones; audio is resampled to 16 kHz when loaded.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from lhotse import CutSet

from data_prep.common import (PrepReport, add_training_corpus_cli, clean_transcript, decoded_recordings, dialect_label,
                              make_cut, note_alternatives, note_unknown_spellings, require_dir, require_paths,
                              save_training_corpus)
from data_prep.component_spellings import COMPONENT_SPELLINGS, spellings_in

CORPUS = "foochow-idioms"
VARIETY = "fuzhou"
LAYOUT = """  <corpus_dir>/offline_api/api/s_<id>.json  (fields _id, field_text, field_audio = <uuid>.wma)
  <corpus_dir>/www/assets/audio/<uuid>.mp3"""


def read_entry(path: Path) -> dict:
    """One ``s_<id>.json`` entry; a file that is not a JSON object names itself."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a JSON entry ({e})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: expected a JSON object with _id, field_text, field_audio")
    return entry


def _note_replaced_spellings(report: PrepReport, replaced: Counter, cut_ids: list[str]) -> None:
    if replaced:
        report.note(f"{sum(replaced.values())} ideographic description sequence(s) in {len(cut_ids)} cut(s) "
                    "replaced by the encoded character: "
                    + ", ".join(f"{s} -> {ch} (U+{ord(ch):04X}) x{n}" for (s, ch), n in replaced.most_common())
                    + f": {', '.join(sorted(cut_ids))}")


def prepare_foochow_idioms(corpus_dir: str | Path, output_dir: str | Path,
                           exclude_texts_from=()) -> dict[str, CutSet]:
    """Write ``foochow-idioms_cuts_train.jsonl.gz`` (minus texts of ``exclude_texts_from``) and the report."""
    corpus_dir = require_dir(corpus_dir, CORPUS, LAYOUT).resolve()
    require_paths(corpus_dir, CORPUS, LAYOUT, "offline_api/api", "www/assets/audio")
    entries = sorted((corpus_dir / "offline_api/api").glob("s_*.json"))
    if not entries:
        raise FileNotFoundError(f"{CORPUS}: no offline_api/api/s_*.json in {corpus_dir}; expected layout:\n{LAYOUT}")
    report = PrepReport(CORPUS)
    rows = []
    for path in entries:
        entry = read_entry(path)
        sid = str(entry.get("_id") or path.stem[2:])
        audio = str(entry.get("field_audio") or "").strip()
        if not audio:
            report.skip(path, "no-audio: empty field_audio")
            continue
        rows.append((sid, corpus_dir / "www/assets/audio" / Path(audio).with_suffix(".mp3").name,
                     str(entry.get("field_text") or "")))
    if dup := [s for s, n in Counter(sid for sid, _, _ in rows).items() if n > 1]:
        raise ValueError(f"{CORPUS}: _id(s) named by more than one entry: {dup[:5]}")
    recordings = decoded_recordings([(audio, f"{CORPUS}_{sid}") for sid, audio, _ in rows], report)
    label, cuts, unknown, replaced, replaced_in = dialect_label(CORPUS, VARIETY), [], Counter(), Counter(), []
    for sid, audio, raw in rows:
        rec = recordings.get(f"{CORPUS}_{sid}")
        if rec is None:
            continue
        text, left = clean_transcript(raw)
        unknown.update(left)
        cut = make_cut(rec, text, label, report, speaker=CORPUS, sentence_id=sid, site=CORPUS, subgroup="min",
                       variety=VARIETY)
        if cut is None:
            continue
        cut.supervisions[0].custom["raw_text"] = raw
        cuts.append(cut)
        if done := [s for s in spellings_in(raw) if s not in left]:
            replaced.update((s, COMPONENT_SPELLINGS[s]) for s in done)
            replaced_in.append(cut.id)
    _note_replaced_spellings(report, replaced, replaced_in)
    note_unknown_spellings(report, unknown)
    note_alternatives(report, cuts)
    return save_training_corpus(cuts, output_dir, CORPUS, report, exclude_texts_from)


def add_cli(subparsers) -> None:
    add_training_corpus_cli(subparsers, CORPUS, "foochow-idioms: Fuzhou Eastern Min proverbs (training data)",
                            "offline_api/, www/", prepare_foochow_idioms)
