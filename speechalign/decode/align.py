"""A window's text put back on its parts: each character forced-aligned to the window's CTC posteriors.

A packed 30-s window holds several utterances (or a recording's speech segments) with gaps between them, and
its decoder writes one text. The experiment's CTC head reads the same encoder output, so torchaudio's CTC
forced alignment places every character of that text on a frame; a character belongs to the part whose span
holds its frame (or the nearest part). Characters the CTC vocabulary lacks (punctuation, rare characters)
follow the character before them. A text the CTC head cannot align is split in proportion to time.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from speechalign.text.normalize import normalize


@lru_cache(maxsize=65536)
def _normalized(ch: str) -> str:
    return normalize(ch)


def char_frames(text: str, log_probs: torch.Tensor, token2id: dict[str, int]) -> list[float | None]:
    """The frame of each character of ``text`` on (T, V) CTC log-probabilities (None: not aligned: a space,
    a character outside the vocabulary, or a text the frames cannot hold)."""
    import torchaudio.functional as F

    # The CTC vocabulary holds normalized characters (simplified, no punctuation): look each one up so.
    ids = [token2id.get(_normalized(c)) if len(_normalized(c)) == 1 else None for c in text]
    ids = [i if i is not None and i > 2 else None for i in ids]   # <blank>, <unk>, <sos/eos> never align
    targets = [i for i in ids if i is not None]
    if not targets:
        return [None] * len(text)
    repeats = sum(a == b for a, b in zip(targets, targets[1:]))
    if len(targets) + repeats > log_probs.shape[0]:
        return [None] * len(text)
    path, scores = F.forced_align(log_probs[None].float().cpu(), torch.tensor([targets], dtype=torch.int32), blank=0)
    spans = F.merge_tokens(path[0], scores[0].exp())
    frames = iter([(s.start + s.end - 1) / 2 for s in spans])
    return [next(frames) if i is not None else None for i in ids]


def split_text(text: str, log_probs: torch.Tensor, token2id: dict[str, int],
               spans: list[tuple[float, float]]) -> list[str]:
    """``text`` cut into one piece per span (start and end frame of each part in the window), in order."""
    if len(spans) == 1:
        return [text]
    frames = char_frames(text, log_probs, token2id)
    if all(f is None for f in frames):   # proportional to time: the k-th of n characters at (k + 0.5) / n
        total = spans[-1][1] - spans[0][0]
        frames = [spans[0][0] + (k + 0.5) / max(len(text), 1) * total for k in range(len(text))]
    pieces = [""] * len(spans)
    part = 0
    for ch, f in zip(text, frames):
        if f is not None:
            part = max(part, nearest(spans, f))   # parts are in order: a stray frame never goes back
        pieces[part] += ch
    return pieces


def nearest(spans: list[tuple[float, float]], frame: float) -> int:
    """The span holding ``frame``, or the closest one."""
    return min(range(len(spans)), key=lambda i: max(spans[i][0] - frame, frame - spans[i][1], 0.0))
