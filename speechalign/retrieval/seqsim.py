"""SeqSim: frame-level cosine similarity between two utterances, for whole blocks at once.

For frames X (T1 x d) and Y (T2 x d), S = X̂Ŷᵀ (cosine), precision P = mean over X's frames of the
row max, recall R = mean over Y's frames of the column max, F1 = 2PR / (P + R). F1 is symmetric.
A block of N x M utterances is one matrix product of all packed (unpadded) frames, reduced per
utterance segment with ``np.maximum.reduceat``; queries are chunked to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class FrameSet:
    """L2-normalized frames of several utterances packed into one (sum T, d) float32 array."""

    frames: np.ndarray
    offsets: np.ndarray      # (n + 1,) start of each utterance, offsets[-1] == len(frames)

    @classmethod
    def from_list(cls, arrays: list[np.ndarray], ids: list[str] | None = None) -> "FrameSet":
        if not arrays:
            raise ValueError("SeqSim: empty set of utterances")
        for i, a in enumerate(arrays):
            if a.ndim != 2 or len(a) == 0:
                name = ids[i] if ids else f"#{i}"
                raise ValueError(f"SeqSim: utterance {name} has no frames (shape {a.shape})")
        frames = np.concatenate(arrays).astype(np.float32, copy=False)
        norms = np.linalg.norm(frames, axis=1, keepdims=True)
        frames = frames / np.maximum(norms, 1e-12)
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])])
        return cls(np.ascontiguousarray(frames), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _check_dims(queries: FrameSet, gallery: FrameSet) -> None:
    if queries.frames.shape[1] != gallery.frames.shape[1]:
        raise ValueError(f"SeqSim: query dim {queries.frames.shape[1]} != gallery dim {gallery.frames.shape[1]}")


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    denom = precision + recall
    return np.where(denom > 0, 2 * precision * recall / np.where(denom == 0, 1, denom), 0.0).astype(np.float32)


def seqsim_block(queries: FrameSet, gallery: FrameSet, max_bytes: int = 256 << 20) -> dict[str, np.ndarray]:
    """P, R and F1 (each N x M) for every (query, gallery) pair."""
    _check_dims(queries, gallery)
    n, m = len(queries), len(gallery)
    g_frames = torch.from_numpy(gallery.frames)
    g_starts, g_lens = gallery.offsets[:-1], gallery.lengths
    precision, recall = np.empty((n, m), np.float32), np.empty((n, m), np.float32)
    rows_per_chunk = max(1, max_bytes // (4 * max(1, len(gallery.frames))))
    i = 0
    while i < n:
        j = i + 1  # grow the chunk by whole utterances up to the row budget
        while j < n and queries.offsets[j + 1] - queries.offsets[i] <= rows_per_chunk:
            j += 1
        lo, hi = queries.offsets[i], queries.offsets[j]
        sim = (torch.from_numpy(queries.frames[lo:hi]) @ g_frames.T).numpy()
        row_max = np.maximum.reduceat(sim, g_starts, axis=1)                  # (rows, m)
        local = queries.offsets[i:j] - lo
        precision[i:j] = np.add.reduceat(row_max, local, axis=0) / queries.lengths[i:j, None]
        for q in range(i, j):
            col_max = sim[queries.offsets[q] - lo : queries.offsets[q + 1] - lo].max(axis=0)
            recall[q] = np.add.reduceat(col_max, g_starts) / g_lens
        i = j
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def seqsim_pairs(queries: FrameSet, gallery: FrameSet, pairs: np.ndarray) -> np.ndarray:
    """F1 for selected (query index, gallery index) pairs only (for re-ranking): per query, one product
    of its frames with its candidates' frames, gathered by index (no per-pair copies or FrameSets)."""
    out = np.empty(len(pairs), np.float32)
    if len(pairs) == 0:
        return out
    _check_dims(queries, gallery)
    q_frames, g_frames = torch.from_numpy(queries.frames), torch.from_numpy(gallery.frames)
    g_lens = gallery.lengths
    order = np.argsort(pairs[:, 0], kind="stable")
    sorted_pairs = pairs[order]
    bounds = np.flatnonzero(np.diff(sorted_pairs[:, 0])) + 1
    for group in np.split(np.arange(len(pairs)), bounds):
        q, cand = int(sorted_pairs[group[0], 0]), sorted_pairs[group, 1]
        lens = g_lens[cand]
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        frame_idx = np.arange(lens.sum()) + np.repeat(gallery.offsets[cand] - starts, lens)
        cand_frames = torch.index_select(g_frames, 0, torch.from_numpy(frame_idx))
        sim = (q_frames[queries.offsets[q] : queries.offsets[q + 1]] @ cand_frames.T).numpy()
        precision = np.maximum.reduceat(sim, starts, axis=1).mean(axis=0)
        recall = np.add.reduceat(sim.max(axis=0), starts) / lens
        out[order[group]] = _f1(precision, recall)
    return out
