"""CTC decoding of (B, T, V) log-probabilities: best path and prefix beam search."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch

NEG_INF = -math.inf


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path per utterance: argmax per frame, merge repeats, drop blanks."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for seq, n in zip(best, lengths.cpu().tolist()):
        seq = torch.unique_consecutive(seq[:n])
        out.append([int(t) for t in seq if t != blank])
    return out


def _logadd(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def ctc_prefix_beam(log_probs: np.ndarray, beam: int, blank: int = 0,
                    token_prune: int | None = None) -> list[tuple[tuple[int, ...], float]]:
    """Prefix beam search over one utterance's (T, V) log-probabilities.

    Every prefix keeps the total probability of all alignments ending in blank and in non-blank, so
    alignments of the same text are summed (best path is not). Returns the n-best
    ``(tokens, log_prob)``, best first. ``beam=1`` is defined as best-path decoding.
    ``token_prune`` limits each frame to its most likely tokens (default ``beam``), exact in practice.
    """
    if beam == 1:
        path = log_probs.argmax(-1)
        tokens = [int(t) for i, t in enumerate(path) if t != blank and (i == 0 or t != path[i - 1])]
        return [(tuple(tokens), float(log_probs[np.arange(len(path)), path].sum()))]
    k = min(token_prune or beam, log_probs.shape[1])
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (blank, non-blank)
    for frame in log_probs:
        top = np.argpartition(-frame, k - 1)[:k]
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (pb, pnb) in beams.items():
            total = _logadd(pb, pnb)
            last = prefix[-1] if prefix else None
            for c in top:
                c = int(c)
                p = float(frame[c])
                if c == blank:
                    entry = nxt[prefix]
                    entry[0] = _logadd(entry[0], total + p)
                elif c == last:
                    same = nxt[prefix]              # repeat without blank collapses
                    same[1] = _logadd(same[1], pnb + p)
                    longer = nxt[prefix + (c,)]     # repeat after blank is a new token
                    longer[1] = _logadd(longer[1], pb + p)
                else:
                    longer = nxt[prefix + (c,)]
                    longer[1] = _logadd(longer[1], total + p)
        ranked = sorted(nxt.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)[:beam]
        beams = {prefix: (pb, pnb) for prefix, (pb, pnb) in ranked}
    return sorted(((p, _logadd(*s)) for p, s in beams.items()), key=lambda x: x[1], reverse=True)
