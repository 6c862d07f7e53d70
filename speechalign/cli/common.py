"""Helpers several stages' commands share: manifest checks, ``LABEL=PATH`` arguments, ``--skip-bad``."""

from __future__ import annotations

from pathlib import Path


def require_cuts(paths, what: str) -> None:
    """An empty manifest is an error: decoding or training on nothing would otherwise end with exit 0."""
    from speechalign.data.manifest import ManifestError, iter_cuts

    for path in paths:
        if next(iter_cuts(path), None) is None:
            raise ManifestError(f"{path}: no cuts (empty manifest given as {what})")


def labelled(items: list[str], command: str, exists, allow_empty: bool = False) -> list[tuple[str, Path | None]]:
    """``LABEL=PATH`` arguments; ``LABEL=`` (no path) only where ``allow_empty`` (a row without results)."""
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or (path and not exists(Path(path))) or (not path and not allow_empty):
            raise ValueError(f"{command}: expected LABEL=PATH with an existing path"
                             f"{' (or LABEL= for a row without results)' if allow_empty else ''}, got {item!r}")
        out.append((label, Path(path) if path else None))
    return out


def add_skip_bad(p) -> None:
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable, non-finite, too-short or wrong-length audio (counted and listed) "
                        "instead of stopping at the first")
