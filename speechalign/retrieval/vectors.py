"""Making embeddings comparable across dialects: L2 normalization, per-dialect centering
(language-mean centering, Libovický et al. 2020) and orthogonal Procrustes maps."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def group_means(x: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    return {g: x[groups == g].mean(axis=0) for g in np.unique(groups)}


def center(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Subtract each group's (dialect's) mean vector from its members."""
    out = x.astype(np.float32, copy=True)
    for g, mean in group_means(x, groups).items():
        out[groups == g] -= mean
    return out


def center_frames(frames: list[np.ndarray], groups: np.ndarray) -> list[np.ndarray]:
    """Frame-level centering: subtract each dialect's mean frame (over all its utterances' frames)."""
    means = {}
    for g in np.unique(groups):
        members = [frames[i] for i in np.flatnonzero(groups == g)]
        means[g] = np.concatenate(members).mean(axis=0)
    return [f - means[g] for f, g in zip(frames, groups)]


def procrustes(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Orthogonal W minimizing ||source @ W - target|| (rows are parallel pairs)."""
    if len(source) != len(target) or len(source) == 0:
        raise ValueError(f"procrustes: need equally many parallel pairs, got {len(source)} and {len(target)}")
    u, _, vt = np.linalg.svd(source.T @ target)
    return (u @ vt).astype(np.float32)
