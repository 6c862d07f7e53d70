"""Cross-dialect retrieval: FAISS over pooled vectors, exact SeqSim, or FAISS shortlist + SeqSim re-rank.

For every ordered pair of dialects (query A, gallery B), the queries are A's utterances whose
sentence id occurs in B (others are skipped and counted) and the gallery is all of B; a query's
correct items are the gallery items with its sentence id. Metrics: R@1/5/10 and MRR (see metrics).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from speechalign.retrieval import INDEXES
from speechalign.retrieval.metrics import ranks, summarize
from speechalign.retrieval.seqsim import FrameSet, seqsim_block, seqsim_pairs

if TYPE_CHECKING:
    import faiss

log = logging.getLogger("speechalign.retrieval")
PROTOCOLS = ("pooled", "seqsim", "rerank")


def _faiss():
    """FAISS on first use, so that training and SeqSim-only runs never load it. Its loader logs at INFO
    every CPU build it tries before the one that loads (the wheel picks one at run time): no news for a user."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


@dataclass
class IndexConfig:
    kind: str = "flat"
    nlist: int = 1024
    nprobe: int = 16
    hnsw_m: int = 32
    ef_search: int = 64


def build_index(vectors: np.ndarray, cfg: IndexConfig) -> faiss.Index:
    """Inner-product index over L2-normalized float32 vectors (so scores are cosines)."""
    if len(vectors) == 0:
        raise ValueError("retrieval: empty gallery")
    faiss = _faiss()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(x)
    d = x.shape[1]
    if cfg.kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif cfg.kind == "ivf":
        nlist = max(1, min(cfg.nlist, len(x) // 39))   # FAISS wants ~39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.nprobe = min(cfg.nprobe, nlist)
    elif cfg.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = cfg.ef_search
    else:
        raise ValueError(f"unknown index {cfg.kind!r}; choose from {INDEXES}")
    index.add(x)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != index.d:
        raise ValueError(f"retrieval: query dimension {q.shape[-1]} does not match the index dimension {index.d}")
    _faiss().normalize_L2(q)
    return index.search(q, min(k, index.ntotal))


def ranks_from_lists(scores: np.ndarray, ids: np.ndarray, correct_sets: list[set[int]]) -> np.ndarray:
    """Pessimistic-tie ranks from ranked lists (ids -1 = empty slot): 1 + incorrect items scoring
    at least as high as the best correct one; inf when no correct item was retrieved."""
    out = np.full(len(ids), np.inf)
    for q, (row_s, row_i) in enumerate(zip(scores, ids)):
        hit = [s for s, i in zip(row_s, row_i) if i in correct_sets[q]]
        if hit:
            best = max(hit)
            out[q] = 1 + sum(1 for s, i in zip(row_s, row_i) if i >= 0 and i not in correct_sets[q] and s >= best)
    return out


def dialect_pairs(dialects: np.ndarray, sentence_ids: np.ndarray, query: str | None = None,
                  gallery: str | None = None):
    """(A, B, query indices, gallery indices, skipped count) for each ordered pair of dialects."""
    names = sorted(set(dialects))
    for a in names:
        for b in names:
            if a == b or (query and a != query) or (gallery and b != gallery):
                continue
            g_idx = np.flatnonzero(dialects == b)
            have = set(sentence_ids[g_idx])
            a_idx = np.flatnonzero(dialects == a)
            q_idx = np.array([i for i in a_idx if sentence_ids[i] in have and sentence_ids[i] != ""], dtype=np.int64)
            yield a, b, q_idx, g_idx, len(a_idx) - len(q_idx)



def require_inputs(what: str, mode: str, vectors, frames) -> None:
    """Pooled vectors for pooled/rerank, frame states for seqsim/rerank."""
    if mode in ("pooled", "rerank") and vectors is None:
        raise ValueError(f"{what} {mode} needs pooled vectors")
    if mode in ("seqsim", "rerank") and frames is None:
        raise ValueError(f"{what} {mode} needs frame states (embed with --frames)")

def _top(out: list, a: str, b: str, q_idx: np.ndarray, g_idx: np.ndarray, scores: np.ndarray, ids: np.ndarray,
         correct: list[set[int]], k: int) -> None:
    # Re-ranked lists keep FAISS's order, so sort by score here; empty slots (-1, -inf) are dropped.
    for q, order in enumerate(np.argsort(-scores, axis=1, kind="stable")[:, :k]):
        kept = [j for j in order if ids[q, j] >= 0 and np.isfinite(scores[q, j])]
        for r, j in enumerate(kept, 1):
            local = int(ids[q, j])
            out.append((a, b, int(q_idx[q]), r, int(g_idx[local]), float(scores[q, j]), local in correct[q]))


def retrieve(vectors: np.ndarray | None, frames: list[np.ndarray] | None, dialects: np.ndarray,
             sentence_ids: np.ndarray, protocol: str = "pooled", index_cfg: IndexConfig | None = None,
             rerank_k: int = 10, query: str | None = None, gallery: str | None = None,
             list_k: int = 100, maps: dict[tuple[str, str], np.ndarray] | None = None,
             neighbours: list[tuple] | None = None, top_k: int = 5, similarity=None) -> list[dict]:
    """Metrics per ordered dialect pair plus a ``mean`` row (unweighted over pairs).

    ``maps[(A, B)]`` (e.g. Procrustes) is applied to A's query vectors and frames when searching B.
    A ``neighbours`` list receives each query's ``top_k`` best gallery items as
    (A, B, query index, rank, gallery index, score, correct).
    ``similarity(query indices, gallery indices)`` -> (queries, gallery) scores replaces vectors/frames
    (exhaustive, e.g. text TF-IDF cosine in retrieval.text); ``protocol`` is then ignored."""
    if similarity is None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")
        require_inputs("protocol", protocol, vectors, frames)
    index_cfg = index_cfg or IndexConfig()
    rows = []
    for a, b, q_idx, g_idx, skipped in dialect_pairs(dialects, sentence_ids, query, gallery):
        if len(q_idx) == 0:
            log.warning("%s -> %s: no query has a counterpart in the gallery; skipped", a, b)
            continue
        by_sid: dict[str, set[int]] = {}
        for local, gi in enumerate(g_idx):
            by_sid.setdefault(sentence_ids[gi], set()).add(local)
        correct = [by_sid[sentence_ids[qi]] for qi in q_idx]
        w = (maps or {}).get((a, b))
        q_vectors = None if vectors is None else (vectors[q_idx] if w is None else vectors[q_idx] @ w)
        q_frames = None if frames is None else [frames[i] if w is None else frames[i] @ w for i in q_idx]
        if similarity is not None:
            full = np.asarray(similarity(q_idx, g_idx), dtype=np.float64)
            ids = np.argsort(-full, axis=1, kind="stable")
            scores = np.take_along_axis(full, ids, 1)
            mask = np.zeros(full.shape, bool)
            for q, c in enumerate(correct):
                mask[q, list(c)] = True
            rank = ranks(full, mask)   # the same pessimistic tie rule as ranks_from_lists, vectorized
        elif protocol == "seqsim":
            f1 = seqsim_block(FrameSet.from_list(q_frames), FrameSet.from_list([frames[i] for i in g_idx]))["f1"]
            ids = np.argsort(-f1, axis=1, kind="stable")
            scores = np.take_along_axis(f1, ids, 1)
            rank = ranks_from_lists(scores, ids, correct)
        else:
            index = build_index(vectors[g_idx], index_cfg)
            k = rerank_k if protocol == "rerank" else list_k
            scores, ids = search(index, q_vectors, k)
            if protocol == "rerank":
                pairs = np.array([(q, i) for q in range(len(q_idx)) for i in ids[q] if i >= 0], dtype=np.int64)
                f1 = seqsim_pairs(FrameSet.from_list(q_frames), FrameSet.from_list([frames[i] for i in g_idx]), pairs)
                scores = np.full(ids.shape, -np.inf, dtype=np.float32)
                scores[ids >= 0] = f1
            rank = ranks_from_lists(scores, ids, correct)
        if neighbours is not None:
            _top(neighbours, a, b, q_idx, g_idx, scores, ids, correct, top_k)
        rows.append({"query": a, "gallery": b, **summarize(rank), "skipped": int(skipped)})
    if not rows:
        raise ValueError("retrieval: no dialect pair with shared sentence ids (need >= 2 dialects with sentence_id)")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("R@1", "R@5", "R@10", "MRR")}
    rows.append({"query": "mean", "gallery": "mean", **mean, "queries": sum(r["queries"] for r in rows),
                 "skipped": sum(r["skipped"] for r in rows)})
    return rows
