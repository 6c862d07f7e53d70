"""The YuBao cross-dialect protocol, exact and vectorized.

For every ordered pair of different subgroups (A, B) and every (site a in A, site b in B): keep the
sentence ids both sites have, score all a x b utterance pairs, count a hit when a source utterance's
best target has its sentence id (R@1 in percent, pessimistic ties: a tie with a wrong target is a
miss), and average over site pairs. The diagonal (distinct sites within one subgroup) is an
optional extension, marked as such in every report.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from speechalign.retrieval.metrics import ranks
from speechalign.retrieval.search import require_inputs
from speechalign.retrieval.seqsim import FrameSet, seqsim_block, seqsim_pairs

log = logging.getLogger("speechalign.retrieval")
SUBGROUPS = ("zh_standard", "zh_dialect", "gan", "hsn", "min", "hak", "yue", "wuu")
MODES = ("pooled", "seqsim", "rerank")
# similarity(source indices, target indices) -> (n_source, n_target) scores; must be symmetric
# (similarity(b, a) == similarity(a, b).T), as each unordered site pair is scored once.
Similarity = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class YubaoResult:
    subgroups: list[str]
    table: np.ndarray                     # (G, G) mean R@1 in percent; NaN where not computed
    site_pairs: np.ndarray                # (G, G) number of site pairs averaged
    per_site_pair: list[tuple] = field(default_factory=list)   # (A, B, site a, site b, n, R@1)
    diagonal: bool = False
    mode: str = "seqsim"


class _Scorer:
    """Similarity matrices between two sites' utterances. SeqSim F1 and cosine are symmetric, so each
    unordered site pair is scored once: ``pair(src, trg)`` returns the (src -> trg) scores and the
    (trg -> src) scores transposed (for rerank they differ: each direction ranks its own shortlist)."""

    def __init__(self, mode, vectors, frames, rerank_k, similarity: Similarity | None = None):
        self.mode, self.vectors, self.frames, self.k = mode, vectors, frames, rerank_k
        self.similarity = similarity
        self._last_set: tuple[tuple, FrameSet] | None = None

    def _source_set(self, idx: np.ndarray) -> FrameSet:
        # Pairs are visited source-major, so the last source set is reused for a whole row of targets.
        key = tuple(idx)
        if self._last_set is None or self._last_set[0] != key:
            self._last_set = (key, FrameSet.from_list([self.frames[i] for i in idx]))
        return self._last_set[1]

    def pair(self, src: np.ndarray, trg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.similarity is not None:
            out = np.asarray(self.similarity(src, trg))
            return out, out
        if self.mode == "pooled":
            out = self.vectors[src] @ self.vectors[trg].T
            return out, out
        if self.mode == "seqsim":
            out = seqsim_block(self._source_set(src), FrameSet.from_list([self.frames[i] for i in trg]))["f1"]
            return out, out
        return self._rerank(src, trg)

    def _rerank(self, src, trg) -> tuple[np.ndarray, np.ndarray]:
        """SeqSim only where a pooled-cosine top-k shortlist (in either direction) needs it; scores
        outside a direction's shortlist stay at -inf for that direction."""
        cos = self.vectors[src] @ self.vectors[trg].T
        k = min(self.k, len(trg), len(src))
        rows = np.zeros(cos.shape, bool)
        np.put_along_axis(rows, np.argsort(-cos, axis=1)[:, :k], True, axis=1)
        cols = np.zeros(cos.shape, bool)
        np.put_along_axis(cols, np.argsort(-cos, axis=0)[:k], True, axis=0)
        pairs = np.argwhere(rows | cols)
        f1 = np.full(cos.shape, -np.inf, np.float32)
        g = FrameSet.from_list([self.frames[j] for j in trg])
        f1[pairs[:, 0], pairs[:, 1]] = seqsim_pairs(self._source_set(src), g, pairs)
        return np.where(rows, f1, -np.inf), np.where(cols, f1, -np.inf)


def mean_off_diagonal(table: np.ndarray) -> float:
    """The protocol's headline number: mean R@1 over the computed off-diagonal subgroup pairs."""
    off = table[~np.eye(len(table), dtype=bool)]
    return float(np.nanmean(off)) if np.isfinite(off).any() else float("nan")


_WORKER_SCORER: _Scorer | None = None   # set before forking, so workers share the frames copy-on-write


def _score_in_worker(job: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    # Many small matrix products run faster as one single-threaded process per core than threaded.
    torch.set_num_threads(1)
    return _WORKER_SCORER.pair(*job)


def _score_pairs(scorer: _Scorer, pairs: list[tuple[np.ndarray, np.ndarray]], workers: int) -> list:
    global _WORKER_SCORER
    progress = dict(desc=f"yubao {scorer.mode}", unit="site pair", total=len(pairs), disable=len(pairs) < 50)
    # A precomputed similarity (e.g. sparse TF-IDF rows) is cheap per pair: forking would cost more.
    serial = scorer.mode == "pooled" or scorer.similarity is not None
    if workers <= 1 or serial or os.name != "posix" or len(pairs) < 2 * workers:
        return [scorer.pair(*p) for p in tqdm(pairs, **progress)]
    _WORKER_SCORER = scorer
    try:
        with get_context("fork").Pool(workers) as pool:
            return list(tqdm(pool.imap(_score_in_worker, pairs, chunksize=8), **progress))
    finally:
        _WORKER_SCORER = None


def yubao_protocol(sites: np.ndarray, subgroups: np.ndarray, sentence_ids: np.ndarray,
                   vectors: np.ndarray | None = None, frames: list[np.ndarray] | None = None,
                   mode: str = "seqsim", rerank_k: int = 10, diagonal: bool = False,
                   order: tuple[str, ...] | None = None, workers: int | None = None,
                   similarity: Similarity | None = None) -> YubaoResult:
    """Mean R@1 (%) per ordered subgroup pair; ``vectors`` must be L2-normalized for pooled/rerank.
    SeqSim scoring runs in ``workers`` processes (default: one per CPU core).

    ``similarity`` replaces vectors/frames with any precomputed score between utterances (indices into
    ``sites``), e.g. text TF-IDF cosine (retrieval.text); ``mode`` is then only the result's label."""
    if similarity is None:
        if mode not in MODES:
            raise ValueError(f"unknown YuBao mode {mode!r}; choose from {MODES}")
        require_inputs("YuBao mode", mode, vectors, frames)
    present = set(subgroups)
    names = [g for g in (order or SUBGROUPS) if g in present] + sorted(present - set(order or SUBGROUPS))
    site_rows: dict[str, dict[str, int]] = {}
    site_group: dict[str, str] = {}
    duplicates = 0
    for i, (site, group, sid) in enumerate(zip(sites, subgroups, sentence_ids)):
        if not site or not sid:
            continue
        if site_group.setdefault(site, group) != group:
            raise ValueError(f"site {site!r} appears in subgroups {site_group[site]!r} and {group!r}")
        rows = site_rows.setdefault(site, {})
        if sid in rows:
            duplicates += 1
            continue
        rows[sid] = i
    if duplicates:
        log.warning("YuBao: %d duplicate (site, sentence id) utterances ignored (first kept)", duplicates)
    by_group = {g: sorted(s for s, gg in site_group.items() if gg == g) for g in names}
    scorer = _Scorer(mode, vectors, frames, rerank_k, similarity)
    G = len(names)
    sums, counts = np.zeros((G, G)), np.zeros((G, G), dtype=int)
    per_pair = []
    jobs = [(ia, ib, a, b) for ia, ga in enumerate(names) for ib, gb in enumerate(names)
            if ia != ib or diagonal for a in by_group[ga] for b in by_group[gb] if a != b]
    shared = {(a, b): sorted(set(site_rows[a]) & set(site_rows[b])) for _, _, a, b in jobs}
    skipped_pairs = sum(1 for v in shared.values() if not v)
    unordered = sorted({min((a, b), (b, a)) for _, _, a, b in jobs if shared[(a, b)]})
    index = lambda site, ids: np.array([site_rows[site][s] for s in ids])
    scored = _score_pairs(scorer, [(index(a, shared[(a, b)]), index(b, shared[(a, b)])) for a, b in unordered],
                          workers or os.cpu_count() or 1)
    by_pair = dict(zip(unordered, scored))
    for ia, ib, a, b in jobs:
        n = len(shared[(a, b)])
        if not n:
            continue
        scores = by_pair[(a, b)][0] if (a, b) in by_pair else by_pair[(b, a)][1].T
        r1 = 100.0 * float((ranks(scores, np.eye(n, dtype=bool)) == 1).mean())
        sums[ia, ib] += r1
        counts[ia, ib] += 1
        per_pair.append((names[ia], names[ib], a, b, n, r1))
    if skipped_pairs:
        log.warning("YuBao: %d site pair(s) share no sentence id and were skipped", skipped_pairs)
    with np.errstate(invalid="ignore"):
        table = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return YubaoResult(names, table, counts, per_pair, diagonal, mode)
