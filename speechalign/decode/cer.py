"""Character error rate, micro-averaged per dialect label (summed edit counts, never a mean of
per-utterance rates). References and hypotheses pass through the same ``normalize``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import jiwer

from speechalign.text import normalize


@dataclass
class Counts:
    chars: int = 0          # reference characters
    hits: int = 0
    subs: int = 0
    dels: int = 0
    ins: int = 0
    utts: int = 0

    @property
    def errors(self) -> int:
        return self.subs + self.dels + self.ins

    @property
    def cer(self) -> float:
        """Errors / reference characters; with no reference characters: 0 if no insertions, else inf."""
        if self.chars == 0:
            return 0.0 if self.ins == 0 else float("inf")
        return self.errors / self.chars

    def add(self, other: "Counts") -> None:
        for f in ("chars", "hits", "subs", "dels", "ins", "utts"):
            setattr(self, f, getattr(self, f) + getattr(other, f))


def align(ref: str, hyp: str):
    """Edit counts and jiwer alignment chunks of two already-normalized strings.

    An empty reference is defined (every hypothesis character is an insertion); jiwer does the rest."""
    if not ref:
        return Counts(0, 0, 0, 0, len(hyp), 1), []
    out = jiwer.process_characters(ref, hyp)
    return Counts(len(ref), out.hits, out.substitutions, out.deletions, out.insertions, 1), out.alignments[0]


@dataclass
class CerScorer:
    """Accumulates per-dialect counts; ``normalize_kwargs`` are recorded in report headers.

    An utterance whose reference is empty after normalization is not scored (its CER is undefined, and
    its insertions would count against no reference characters at all): it is listed in ``skipped``
    as ``(utterance id or None, dialect)``, for the report to name."""

    normalize_kwargs: dict = field(default_factory=dict)
    groups: dict = field(default_factory=lambda: defaultdict(Counts))
    skipped: list[tuple[str | None, str]] = field(default_factory=list)

    def add(self, ref: str, hyp: str, dialect: str, utt_id: str | None = None) -> Counts | None:
        """Score one utterance; None (and a ``skipped`` entry) for an empty reference."""
        scored = self.add_normalized(normalize(ref, **self.normalize_kwargs), normalize(hyp, **self.normalize_kwargs),
                                     dialect, utt_id)
        return None if scored is None else scored[0]

    def add_normalized(self, ref: str, hyp: str, dialect: str, utt_id: str | None = None):
        """:meth:`add` for already-normalized texts: the counts and jiwer's alignment chunks, or None."""
        if not ref:
            self.skipped.append((utt_id, dialect))
            return None
        counts, chunks = align(ref, hyp)
        self.groups[dialect].add(counts)
        return counts, chunks

    def skipped_note(self, max_named: int = 5) -> str:
        """``skipped N utterance(s) with an empty reference (not scored): a, b, ...``, or "" if none."""
        if not self.skipped:
            return ""
        line = f"skipped {len(self.skipped)} utterance(s) with an empty reference (not scored)"
        ids = [i for i, _ in self.skipped if i is not None]
        if ids:
            line += ": " + ", ".join(ids[:max_named])
            line += f" and {len(ids) - max_named} more" if len(ids) > max_named else ""
        return line

    def overall(self) -> Counts:
        total = Counts()
        for c in self.groups.values():
            total.add(c)
        return total

    def rows(self) -> list[tuple[str, Counts]]:
        return sorted(self.groups.items()) + [("overall", self.overall())]
