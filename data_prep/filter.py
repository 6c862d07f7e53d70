"""``speechalign prepare filter``: drop the cuts of any training manifest whose text is an evaluation
text, so a manifest prepared without ``--exclude-texts-from`` can still be made safe to train on.

Writes ``--out`` atomically and ``<out name>_filter_prep_report.txt`` beside it (drops with cut id
and matching manifest).
"""

from __future__ import annotations

import os
from pathlib import Path

from lhotse import CutSet

from speechalign.data.contamination import PrepReport, add_exclude_option, drop_contaminated
from speechalign.data.manifest import iter_cuts


def filter_cuts(cuts_path: str | Path, exclude_texts_from, out: str | Path) -> CutSet:
    """Copy ``cuts_path`` to ``out`` without the cuts whose text occurs in ``exclude_texts_from``."""
    cuts_path, out = Path(cuts_path), Path(out)
    if out.resolve() == cuts_path.resolve():
        raise ValueError(f"filter: --out {out} is the input manifest; write to a new file")
    if not str(out).endswith((".jsonl", ".jsonl.gz")):
        raise ValueError(f"filter: --out {out} must end in .jsonl or .jsonl.gz")
    name = out.name.split(".")[0]
    report = PrepReport(f"{name}_filter")
    kept = drop_contaminated(iter_cuts(cuts_path), exclude_texts_from, report)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{name}.tmp{''.join(out.suffixes)}")
    result = CutSet.from_cuts(kept)
    result.to_file(tmp)
    os.replace(tmp, out)
    report.kept[name] = len(kept)
    report.note(f"input {cuts_path}; evaluation manifests: {', '.join(map(str, exclude_texts_from))}")
    report.write(out.parent)
    return result


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("filter", help="drop cuts whose text equals a text of evaluation manifests")
    p.add_argument("--cuts", required=True, type=Path, help="input cut manifest (.jsonl or .jsonl.gz)")
    add_exclude_option(p, required=True)
    p.add_argument("--out", required=True, type=Path, help="output manifest (.jsonl or .jsonl.gz); not the input")
    p.set_defaults(func=lambda a: filter_cuts(a.cuts, a.exclude_texts_from, a.out))
