"""The YuBao cross-dialect protocol, exact and vectorized.

For every ordered pair of different subgroups (A, B) and every (site a in A, site b in B): keep the
sentence ids both sites have, score all a x b utterance pairs, count a hit when a source utterance's
best target has its sentence id (R@1 in percent, pessimistic ties: a tie with a wrong target is a
miss), and average over site pairs. The diagonal (distinct sites within one subgroup) is an
optional extension, marked as such in every report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from speechalign.retrieval.metrics import ranks
from speechalign.retrieval.search import require_inputs
from speechalign.retrieval.seqsim import FrameSet, seqsim_block, seqsim_pairs

log = logging.getLogger("speechalign.retrieval")
SUBGROUPS = ("zh_standard", "zh_dialect", "gan", "hsn", "min", "hak", "yue", "wuu")
MODES = ("pooled", "seqsim", "rerank")


@dataclass
class YubaoResult:
    subgroups: list[str]
    table: np.ndarray                     # (G, G) mean R@1 in percent; NaN where not computed
    site_pairs: np.ndarray                # (G, G) number of site pairs averaged
    per_site_pair: list[tuple] = field(default_factory=list)   # (A, B, site a, site b, n, R@1)
    diagonal: bool = False
    mode: str = "seqsim"


class _Scorer:
    """Similarity matrices between two sites' utterances, cached by unordered site pair
    (SeqSim F1 and cosine are symmetric, so (b, a) is the transpose of (a, b))."""

    def __init__(self, mode, vectors, frames, rerank_k):
        self.mode, self.vectors, self.frames, self.k = mode, vectors, frames, rerank_k
        self.cache: dict[tuple, np.ndarray] = {}
        self._last_set: tuple[tuple, FrameSet] | None = None

    def _source_set(self, idx: np.ndarray) -> FrameSet:
        # Site pairs are visited source-major, so the last source set is reused for a whole row of targets.
        key = tuple(idx)
        if self._last_set is None or self._last_set[0] != key:
            self._last_set = (key, FrameSet.from_list([self.frames[i] for i in idx]))
        return self._last_set[1]

    def __call__(self, src: np.ndarray, trg: np.ndarray) -> np.ndarray:
        if self.mode == "pooled":
            return self.vectors[src] @ self.vectors[trg].T
        key = (tuple(src), tuple(trg))
        if key in self.cache:
            return self.cache[key]
        if self.mode == "seqsim" and (tuple(trg), tuple(src)) in self.cache:
            return self.cache[(tuple(trg), tuple(src))].T
        if self.mode == "seqsim":
            out = seqsim_block(FrameSet.from_list([self.frames[i] for i in src]),
                               FrameSet.from_list([self.frames[i] for i in trg]))["f1"]
        else:
            out = self._rerank(src, trg)
        self.cache[key] = out
        return out

    def _rerank(self, src, trg) -> np.ndarray:
        """SeqSim only where a pooled-cosine top-k shortlist (in either direction) needs it."""
        cos = self.vectors[src] @ self.vectors[trg].T
        k = min(self.k, len(trg), len(src))
        rows = np.zeros(cos.shape, bool)
        np.put_along_axis(rows, np.argsort(-cos, axis=1)[:, :k], True, axis=1)
        cols = np.zeros(cos.shape, bool)
        np.put_along_axis(cols, np.argsort(-cos, axis=0)[:k], True, axis=0)
        need = rows | cols
        f1 = np.full(cos.shape, -np.inf, np.float32)
        pairs = np.argwhere(need)
        g = FrameSet.from_list([self.frames[j] for j in trg])
        f1[pairs[:, 0], pairs[:, 1]] = seqsim_pairs(self._source_set(src), g, pairs)
        # Rows rank only their own shortlist, columns theirs: encode both in one matrix by keeping
        # scores outside a row's shortlist at -inf for the forward direction.
        self.cache[("cols", tuple(src), tuple(trg))] = np.where(cols, f1, -np.inf)
        return np.where(rows, f1, -np.inf)

    def reverse(self, src: np.ndarray, trg: np.ndarray) -> np.ndarray | None:
        """For rerank, the (trg -> src) scores computed alongside (src -> trg)."""
        cached = self.cache.get(("cols", tuple(src), tuple(trg)))
        return None if cached is None else cached.T


def yubao_protocol(sites: np.ndarray, subgroups: np.ndarray, sentence_ids: np.ndarray,
                   vectors: np.ndarray | None = None, frames: list[np.ndarray] | None = None,
                   mode: str = "seqsim", rerank_k: int = 10, diagonal: bool = False,
                   order: tuple[str, ...] | None = None) -> YubaoResult:
    """Mean R@1 (%) per ordered subgroup pair; ``vectors`` must be L2-normalized for pooled/rerank."""
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
    scorer = _Scorer(mode, vectors, frames, rerank_k)
    G = len(names)
    sums, counts = np.zeros((G, G)), np.zeros((G, G), dtype=int)
    per_pair = []
    jobs = [(ia, ib, a, b) for ia, ga in enumerate(names) for ib, gb in enumerate(names)
            if ia != ib or diagonal for a in by_group[ga] for b in by_group[gb] if a != b]
    skipped_pairs = 0
    for ia, ib, a, b in tqdm(jobs, desc=f"yubao {mode}", unit="site pair", disable=len(jobs) < 50):
        shared = sorted(set(site_rows[a]) & set(site_rows[b]))
        if not shared:
            skipped_pairs += 1
            continue
        src = np.array([site_rows[a][s] for s in shared])
        trg = np.array([site_rows[b][s] for s in shared])
        if mode == "rerank" and scorer.reverse(trg, src) is not None:
            scores = scorer.reverse(trg, src)
        else:
            scores = scorer(src, trg)
        r1 = 100.0 * float((ranks(scores, np.eye(len(shared), dtype=bool)) == 1).mean())
        sums[ia, ib] += r1
        counts[ia, ib] += 1
        per_pair.append((names[ia], names[ib], a, b, len(shared), r1))
    if skipped_pairs:
        log.warning("YuBao: %d site pair(s) share no sentence id and were skipped", skipped_pairs)
    with np.errstate(invalid="ignore"):
        table = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return YubaoResult(names, table, counts, per_pair, diagonal, mode)
