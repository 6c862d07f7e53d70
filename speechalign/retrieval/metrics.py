"""Retrieval metrics from score matrices, with one explicit tie rule.

A query's rank is 1 + the number of *incorrect* gallery items scoring at least as high as its best
correct item: ties are resolved against the query (pessimistic), so degenerate embeddings with
constant scores cannot look good by the luck of index order.
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def ranks(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Rank of the best correct item per query row; ``inf`` where a row has no correct item.

    scores, correct: (N, M); scores may hold -inf for items not scored (e.g. outside a shortlist)."""
    best = np.where(correct, scores, -np.inf).max(axis=1, initial=-np.inf)
    beaten = ((scores >= best[:, None]) & ~correct).sum(axis=1)
    out = 1.0 + beaten
    out[~correct.any(axis=1) | ~np.isfinite(best)] = np.inf
    return out


def summarize(rank: np.ndarray, ks=KS) -> dict[str, float]:
    """R@k (fractions) and MRR over queries; an infinite rank counts as a miss."""
    if len(rank) == 0:
        raise ValueError("no queries to evaluate")
    out = {f"R@{k}": float((rank <= k).mean()) for k in ks}
    out["MRR"] = float(np.where(np.isfinite(rank), 1.0 / rank, 0.0).mean())
    out["queries"] = int(len(rank))
    return out
