"""Result tables as text: tab-separated for programs, markdown for people. Every cell is ``str()``-ed."""

from __future__ import annotations

from typing import Iterable, Sequence


def tsv(header: Sequence, rows: Iterable[Sequence]) -> str:
    """The header line, then one line per row."""
    return "".join("\t".join(map(str, r)) + "\n" for r in [header, *rows])


def markdown(header: Sequence, rows: Iterable[Sequence]) -> str:
    """A pipe table: the header, its ``---`` rule, then one line per row."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    return "".join(line + "\n" for line in lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])
