"""``speechalign retrieve`` and ``speechalign sweep`` on an embedding directory."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechalign.retrieval.embed import EmbeddingStore
from speechalign.atomic import write_text
from speechalign.retrieval.report import sweep_plot, write_neighbours, write_pair_table, write_yubao
from speechalign.retrieval.search import IndexConfig, retrieve
from speechalign.retrieval.vectors import center, center_frames, l2_normalize, procrustes
from speechalign.retrieval.yubao import yubao_protocol

log = logging.getLogger("speechalign.retrieval")


@dataclass
class RetrievalOptions:
    layer: int = -1
    protocol: str = "pooled"            # pooled | seqsim | rerank | yubao | fleurs
    pool: str = "mean"
    center: bool = False                 # subtract each dialect's mean before normalizing
    map_train: Path | None = None        # embedding dir of disjoint parallel pairs -> Procrustes maps
    index: IndexConfig | None = None
    rerank_k: int = 10
    query: str | None = None
    gallery: str | None = None
    yubao_mode: str = "seqsim"           # scoring inside the yubao protocol: pooled | seqsim | rerank
    fleurs_mode: str = "seqsim"
    diagonal: bool = False


def _layer(store: EmbeddingStore, layer: int) -> int:
    layers = store.info["layers"]
    resolved = max(layers) + 1 + layer if layer < 0 else layer
    if resolved not in layers:
        raise ValueError(f"{store.path}: layer {layer} not available; valid layers: {layers}")
    return resolved


def load_inputs(store: EmbeddingStore, layer: int, opts: RetrievalOptions, need_frames: bool):
    dialects = np.array([m["dialect"] for m in store.meta])
    vectors = store.pooled(layer, opts.pool)
    if len(vectors) == 0:
        raise ValueError(f"{store.path}: no utterances")
    frames = store.frames(layer) if need_frames else None
    if opts.center:
        vectors = center(vectors, dialects)
        frames = center_frames(frames, dialects) if frames is not None else None
    return dialects, l2_normalize(vectors), frames


def procrustes_maps(train_dir: Path, layer: int, opts: RetrievalOptions) -> dict[tuple[str, str], np.ndarray]:
    """One orthogonal map per ordered dialect pair, from parallel pairs (same sentence id) of ``train_dir``."""
    store = EmbeddingStore.open(train_dir)
    dialects = np.array([m["dialect"] for m in store.meta])
    sids = np.array([m["sentence_id"] for m in store.meta])
    x = store.pooled(layer, opts.pool)
    x = l2_normalize(center(x, dialects) if opts.center else x)
    maps = {}
    for a in np.unique(dialects):
        first_a = {s: i for i, s in reversed(list(enumerate(sids))) if dialects[i] == a and s}
        for b in np.unique(dialects):
            if a == b:
                continue
            pairs = [(first_a[s], i) for i, s in enumerate(sids) if dialects[i] == b and s in first_a]
            if len(pairs) < 2:
                continue
            src, trg = np.array(pairs).T
            maps[(a, b)] = procrustes(x[src], x[trg])
    if not maps:
        raise ValueError(f"{train_dir}: no parallel pairs (same sentence_id in two dialects) to learn maps from")
    log.info("learned %d Procrustes maps from %s", len(maps), train_dir)
    return maps


def first_per_prompt(store: EmbeddingStore) -> np.ndarray:
    """FLEURS pairing: the first recording of each (language, prompt id)."""
    seen, keep = set(), []
    for i, m in enumerate(store.meta):
        key = (m["dialect"], m["sentence_id"])
        if m["sentence_id"] and key not in seen:
            seen.add(key)
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def run_retrieve(emb_dir: str | Path, out_dir: str | Path, opts: RetrievalOptions) -> dict:
    store = EmbeddingStore.open(emb_dir)
    layer = _layer(store, opts.layer)
    out_dir = Path(out_dir)
    need_frames = (opts.protocol in ("seqsim", "rerank")
                   or (opts.protocol == "yubao" and opts.yubao_mode != "pooled")
                   or (opts.protocol == "fleurs" and opts.fleurs_mode != "pooled"))
    dialects, vectors, frames = load_inputs(store, layer, opts, need_frames)
    sids = np.array([m["sentence_id"] for m in store.meta])
    tag = f"L{layer}-{opts.pool}" + ("-center" if opts.center else "") + ("-procrustes" if opts.map_train else "")
    src = store.info.get("source", {})
    title_src = ", ".join(f"{k}={v}" for k, v in src.items())
    if opts.protocol == "yubao":
        result = yubao_protocol(np.array([m["site"] for m in store.meta]), np.array([m["subgroup"] for m in store.meta]),
                                sids, vectors, frames, opts.yubao_mode, opts.rerank_k, opts.diagonal)
        name = f"yubao-{opts.yubao_mode}-{tag}"
        paths = write_yubao(result, out_dir, name, f"YuBao protocol ({opts.yubao_mode}), layer {layer}, {title_src}")
        log.info("YuBao %s: mean R@1 %.2f%% -> %s", opts.yubao_mode, np.nanmean(result.table), paths["md"])
        return {"result": result, "paths": paths}
    maps = procrustes_maps(Path(opts.map_train), layer, opts) if opts.map_train else None
    protocol = opts.protocol
    if protocol == "fleurs":
        keep = first_per_prompt(store)
        dialects, vectors, sids = dialects[keep], vectors[keep], sids[keep]
        frames = [frames[i] for i in keep] if frames is not None else None
        protocol = opts.fleurs_mode
    utt_ids = [m["id"] for m in store.meta]
    if opts.protocol == "fleurs":
        utt_ids = [utt_ids[i] for i in keep]
    neighbours: list[tuple] = []
    rows = retrieve(vectors, frames, dialects, sids, protocol, opts.index, opts.rerank_k, opts.query,
                    opts.gallery, maps=maps, neighbours=neighbours)
    name = f"{opts.protocol}-{tag}"
    title = f"Retrieval ({opts.protocol}), layer {layer}, {title_src}"
    paths = write_pair_table(rows, out_dir, name, title)
    paths["neighbours"] = write_neighbours(neighbours, utt_ids, out_dir / "neighbours" / f"{name}.tsv",
                                           f"{title}; emb-dir: {store.path}")
    mean = rows[-1]
    log.info("%s: mean R@1 %.4f, R@5 %.4f, MRR %.4f over %d dialect pairs -> %s", name, mean["R@1"], mean["R@5"],
             mean["MRR"], len(rows) - 1, paths["md"])
    return {"rows": rows, "paths": paths}


def run_sweep(emb_dir: str | Path, out_dir: str | Path, opts: RetrievalOptions, seqsim: bool = True) -> dict:
    """R@1 per layer (pooled, and SeqSim when frames were stored) for every dialect pair."""
    store = EmbeddingStore.open(emb_dir)
    layers = store.info["layers"]
    seqsim = seqsim and bool(store.info.get("frames"))
    sids = np.array([m["sentence_id"] for m in store.meta])
    table = []   # layer, method, query, gallery, R@1
    for layer in layers:
        dialects, vectors, frames = load_inputs(store, layer, opts, seqsim)
        for method in ("pooled", "seqsim") if seqsim else ("pooled",):
            for r in retrieve(vectors, frames, dialects, sids, method, opts.index, opts.rerank_k, opts.query, opts.gallery):
                table.append((layer, method, r["query"], r["gallery"], r["R@1"]))
    tag = opts.pool + ("-center" if opts.center else "")
    out_dir = Path(out_dir)
    lines = ["layer\tmethod\tquery\tgallery\tR@1"] + [f"{l}\t{m}\t{q}\t{g}\t{v:.4f}" for l, m, q, g, v in table]
    write_text(out_dir / f"sweep-{tag}.tsv", "\n".join(lines) + "\n")
    series = {}
    for layer, method, q, g, v in table:
        label = f"{method}: {q}→{g}" if q != "mean" else f"{method}: mean"
        series.setdefault(label, {})[layer] = v
    pairs = {k: [v.get(layer, np.nan) for layer in layers] for k, v in series.items()}
    best = max(((v, l, m) for l, m, q, g, v in table if q == "mean"), default=None)
    summary = f"best layer: {best[1]} ({best[2]}, mean R@1 {best[0]:.3f})" if best else "no results"
    png = sweep_plot(layers, pairs, out_dir / f"sweep-{tag}.png", f"Layer sweep ({tag}); {summary}")
    write_text(out_dir / f"sweep-{tag}.md", f"Layer sweep ({tag}): {summary}\n\n| layer | method | query | gallery | R@1 |\n"
           "|---|---|---|---|---|\n" + "".join(f"| {l} | {m} | {q} | {g} | {v:.4f} |\n" for l, m, q, g, v in table))
    log.info("sweep: %s -> %s", summary, png)
    return {"table": table, "best": best, "png": png}
