"""``speechalign compare``: one side-by-side table of many retrieval runs for one dialect pair."""

from __future__ import annotations

import logging
from pathlib import Path

from speechalign.retrieval.report import _md, _write

log = logging.getLogger("speechalign.retrieval")
COLUMNS = ("R@1", "R@5", "R@10", "MRR")


def read_pair_table(path: Path) -> tuple[str, list[dict]]:
    """(title, rows) of a ``retrieve`` pair table TSV; rows are dicts keyed by the header."""
    lines = path.read_text(encoding="utf-8").splitlines()
    title = lines[0][2:] if lines and lines[0].startswith("# ") else ""
    body = [ln.split("\t") for ln in lines if ln and not ln.startswith("#")]
    if not body or not {"query", "gallery", *COLUMNS} <= set(body[0]):
        raise ValueError(f"{path}: not a retrieval pair table (expected columns query, gallery, {', '.join(COLUMNS)})")
    return title, [dict(zip(body[0], r)) for r in body[1:]]


def compare(tables: list[tuple[str, Path]], query: str, gallery: str, out: Path, title: str) -> Path:
    """Rows: one per (label, table), for ``query -> gallery``. Tables without that pair are errors."""
    header = ["system", *COLUMNS, "queries", "chance R@1 ≈"]
    rows = []
    for label, path in tables:
        _, pairs = read_pair_table(path)
        match = [r for r in pairs if r["query"] == query and r["gallery"] == gallery]
        if not match:
            found = sorted({f"{r['query']}->{r['gallery']}" for r in pairs})
            raise ValueError(f"{path}: no row for {query}->{gallery}; pairs present: {found}")
        r = match[0]
        # Parallel sets: each answerable query has its own gallery item, so chance R@1 is about 1/queries.
        rows.append([label, *[f"{float(r[c]):.3f}" for c in COLUMNS], r["queries"], f"{1 / max(int(r['queries']), 1):.3f}"])
    rows.sort(key=lambda x: -float(x[1]))
    md = f"{title}\n\n{query} → {gallery}; sorted by R@1.\n\n" + _md(header, rows)
    _write(out.with_suffix(".tsv"), "\n".join("\t".join(x) for x in [header] + rows) + "\n")
    path = _write(out.with_suffix(".md"), md)
    log.info("comparison of %d systems -> %s", len(rows), path)
    return path


def parse_table_args(items: list[str]) -> list[tuple[str, Path]]:
    """``LABEL=PATH`` or a bare PATH (labelled ``<parent dir>/<file stem>``)."""
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        p = Path(path) if sep else Path(item)
        if not p.is_file():
            raise FileNotFoundError(f"compare: {p} does not exist")
        out.append((label if sep else f"{p.parent.name}/{p.stem}", p))
    return out
