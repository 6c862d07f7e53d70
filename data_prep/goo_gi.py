"""goo-gi (五語快易通): the same everyday sentences read in Mandarin and nine Taiwanese Min/Hakka
varieties, one speaker per variety — a small real parallel corpus (YuBao-style sites and subgroups).

Layout::

    <corpus_dir>/utf8_xml/<code>.xml.csv   no header; id, folder, file, hanzi
    <corpus_dir>/mp3/<code>_files/NNN.mp3  (folder and file as named in the csv)

Splits are by sentence id (shared by all varieties), so a dev/test sentence is never in train in any
variety: ``goo-gi_cuts_{train,dev,test}.jsonl.gz``. With ``all_test`` every sentence is test (for
held-out copies with other ids). Per cut: ``site`` = ``goo-gi_<code>`` (one site per variety; the
readable variety name is the ``language``), ``variety`` = code, ``subgroup`` = zh_standard/min/hak,
``sentence_id`` = the 3-digit id, ``translation`` = the Mandarin (``g``) row of that id, ``raw_text`` =
the row as written; the supervision text is the normalized cleaned row (see ``clean_transcript``).
Durations are decoded ones (MP3 headers can be wrong); audio is resampled to 16 kHz when loaded.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from lhotse import CutSet
from lhotse.cut import Cut

from data_prep.common import (PrepReport, clean_transcript, decoded_recordings, dialect_label,
                              make_cut, note_alternatives, note_unknown_spellings, require_dir, require_paths,
                              save_split)
from speechalign.data.contamination import add_exclude_option, drop_contaminated

CORPUS = "goo-gi"
LAYOUT = """  <corpus_dir>/utf8_xml/<code>.xml.csv  (no header: id, folder, file, hanzi)
  <corpus_dir>/mp3/<code>_files/NNN.mp3"""
#: variety code -> YuBao subgroup, in the README's order.
SUBGROUPS = {"g": "zh_standard", "m": "min", "j": "min", "f": "min", "c": "hak", "h": "hak", "d": "hak",
             "r": "hak", "z": "hak", "l": "hak"}
DEFAULT_RANGES = {"train": "001-120", "dev": "121-140", "test": "141-170"}


def parse_ids(spec: str | None, what: str) -> set[int]:
    """``"001-120"``, ``"121-140,150"`` -> sentence numbers; empty/None -> none."""
    ids: set[int] = set()
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"{CORPUS}: {what}: {part!r} is not an id or an id range like 001-120") from None
        if a > b:
            raise ValueError(f"{CORPUS}: {what}: range {part!r} is empty (start after end)")
        ids.update(range(a, b + 1))
    return ids


def split_ranges(train_ids: str | None, dev_ids: str | None, test_ids: str | None) -> dict[str, set[int]]:
    """Parsed id ranges per split; overlapping ranges are an error naming the shared ids."""
    ranges = {"train": parse_ids(train_ids, "train_ids"), "dev": parse_ids(dev_ids, "dev_ids"),
              "test": parse_ids(test_ids, "test_ids")}
    names = list(ranges)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(ranges[a] & ranges[b])
            if shared:
                raise ValueError(f"{CORPUS}: {a}_ids and {b}_ids overlap on {len(shared)} id(s), "
                                 f"e.g. {', '.join(f'{n:03d}' for n in shared[:5])}")
    return ranges


def read_rows(path: Path) -> list[tuple[str, str, str, str]]:
    """(id, folder, file, hanzi) rows of one variety's csv; a malformed row names file and line."""
    rows = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        for line_no, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 4 or not row[0].strip().isdigit():
                raise ValueError(f"{path}:{line_no}: expected 4 fields 'id, folder, file, hanzi' "
                                 f"with a numeric id, got {row!r}")
            rows.append(tuple(c.strip() for c in row))
    return rows


def _note_unseen_chars(report: PrepReport, splits: dict[str, list[Cut]]) -> None:
    seen = {ch for c in splits.get("train", []) for ch in c.supervisions[0].text}
    if not seen:
        return
    for split in ("dev", "test"):
        unseen = Counter(ch for c in splits.get(split, []) for ch in c.supervisions[0].text if ch not in seen)
        if unseen:
            report.note(f"{split}: {len(unseen)} character(s) never in the train texts (unknown to a tokenizer "
                        f"built on train): " + " ".join(f"{ch}x{n}" for ch, n in unseen.most_common()))


def _note_shared_texts(report: PrepReport, splits: dict[str, list[Cut]]) -> None:
    train = {(c.supervisions[0].custom["variety"], c.supervisions[0].text) for c in splits.get("train", [])}
    if not train:
        return
    for split in ("dev", "test"):
        same = [c.id for c in splits.get(split, [])
                if (c.supervisions[0].custom["variety"], c.supervisions[0].text) in train]
        report.note(f"{split}: {len(same)} cut(s) whose text equals a train text of the same variety"
                    + (f": {', '.join(same)}" if same else ""))


def prepare_goo_gi(corpus_dir: str | Path, output_dir: str | Path, varieties: list[str] | None = None,
                   train_ids: str | None = DEFAULT_RANGES["train"], dev_ids: str | None = DEFAULT_RANGES["dev"],
                   test_ids: str | None = DEFAULT_RANGES["test"], exclude_texts_from=(),
                   all_test: bool = False) -> dict[str, CutSet]:
    """Write the goo-gi split manifests and report; ``all_test`` puts every sentence in test.

    Sentences whose id is in no range are not written; train cuts whose text occurs in an
    ``exclude_texts_from`` manifest are dropped (counted in the report)."""
    corpus_dir = require_dir(corpus_dir, CORPUS, LAYOUT).resolve()
    require_paths(corpus_dir, CORPUS, LAYOUT, "utf8_xml")
    ranges = {"test": set()} if all_test else split_ranges(train_ids, dev_ids, test_ids)
    unknown_codes = sorted(set(varieties or ()) - set(SUBGROUPS))
    if unknown_codes:
        raise ValueError(f"{CORPUS}: unknown variety code(s) {unknown_codes}; known: {list(SUBGROUPS)}")
    csvs = {code: corpus_dir / "utf8_xml" / f"{code}.xml.csv" for code in varieties or SUBGROUPS}
    if varieties:
        require_paths(corpus_dir, CORPUS, LAYOUT, *(str(p.relative_to(corpus_dir)) for p in csvs.values()))
    report = PrepReport(CORPUS)
    absent = [code for code, p in csvs.items() if not p.is_file()]
    if absent:
        report.note(f"varieties without a transcript file (not prepared): {', '.join(absent)}")
    csvs = {code: p for code, p in csvs.items() if p.is_file()}
    if not csvs:
        raise FileNotFoundError(f"{CORPUS}: no utf8_xml/<code>.xml.csv in {corpus_dir}; expected layout:\n{LAYOUT}")
    g_csv = corpus_dir / "utf8_xml" / "g.xml.csv"
    mandarin = {r[0]: clean_transcript(r[3])[0] for r in read_rows(g_csv)} if g_csv.is_file() else {}

    rows, unknown = [], Counter()
    for code, path in csvs.items():
        for sid, folder, name, hanzi in read_rows(path):
            split = "test" if all_test else next((s for s, ids in ranges.items() if int(sid) in ids), None)
            if split is not None:
                rows.append((split, code, sid, corpus_dir / "mp3" / folder / name, hanzi))
    recordings = decoded_recordings([(audio, f"{CORPUS}_{code}_{sid}") for _, code, sid, audio, _ in rows], report)
    splits: dict[str, list[Cut]] = {s: [] for s in ranges}
    for split, code, sid, audio, hanzi in rows:
        rec = recordings.get(f"{CORPUS}_{code}_{sid}")
        if rec is None:
            continue
        text, left = clean_transcript(hanzi)
        unknown.update(left)
        cut = make_cut(rec, text, dialect_label(CORPUS, code), report, speaker=f"{CORPUS}_{code}",
                       sentence_id=sid, site=f"{CORPUS}_{code}", subgroup=SUBGROUPS[code], variety=code,
                       translation=mandarin.get(sid) or None)
        if cut is not None:
            cut.supervisions[0].custom["raw_text"] = hanzi
            splits[split].append(cut)
    note_unknown_spellings(report, unknown)
    note_alternatives(report, [c for cuts in splits.values() for c in cuts])
    if "train" in splits and exclude_texts_from:
        splits["train"] = drop_contaminated(splits["train"], exclude_texts_from, report)
    _note_unseen_chars(report, splits)
    _note_shared_texts(report, splits)
    out = {s: save_split(cuts, output_dir, CORPUS, s, report) for s, cuts in splits.items() if all_test or ranges[s]}
    report.write(output_dir)
    return out


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("goo-gi", help="goo-gi: parallel sentences in Mandarin + 9 Taiwanese Min/Hakka varieties")
    p.add_argument("--corpus-dir", required=True, type=Path, help="goo-gi root (utf8_xml/, mp3/)")
    p.add_argument("--output-dir", required=True, type=Path, help="where manifests and the report are written")
    p.add_argument("--varieties", nargs="+", choices=list(SUBGROUPS), metavar="CODE",
                   help=f"variety codes to prepare ({' '.join(SUBGROUPS)}); default: all present")
    for split, default in DEFAULT_RANGES.items():
        p.add_argument(f"--{split}-ids", default=None,
                       help=f"sentence ids of the {split} split, ranges and lists like 001-120,150 (default {default})")
    p.add_argument("--all-test", action="store_true",
                   help="put every sentence in test (evaluating a held-out copy); excludes the --*-ids options")
    add_exclude_option(p)
    p.set_defaults(func=_run)


def _run(a) -> None:
    given = {s: getattr(a, f"{s}_ids") for s in DEFAULT_RANGES}
    if a.all_test and any(v is not None for v in given.values()):
        raise ValueError(f"{CORPUS}: --all-test cannot be combined with --train-ids/--dev-ids/--test-ids")
    ids = {f"{s}_ids": DEFAULT_RANGES[s] if v is None else v for s, v in given.items()}
    prepare_goo_gi(a.corpus_dir, a.output_dir, varieties=a.varieties, exclude_texts_from=a.exclude_texts_from,
                   all_test=a.all_test, **ids)
