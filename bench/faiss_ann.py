"""Approximate FAISS indexes vs exact Flat search on 500k x 256 clustered vectors.

For IVF (nprobe sweep) and HNSW (efSearch sweep) prints the smallest setting whose recall@10
against exact search is >= 0.95, and its query speed-up over IndexFlatIP (goal >= 10x).
Usage: python bench/faiss_ann.py [--n 500000] [--dim 256] [--queries 2000]
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centers[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    faiss.normalize_L2(x)
    return x


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def timed_search(index, q, k) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    _, ids = index.search(q, k)
    return ids, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--clusters", type=int, default=2000)
    args = parser.parse_args()
    x = clustered(args.n, args.dim, args.clusters, 0)
    q = x[np.random.default_rng(1).choice(args.n, args.queries, replace=False)] + 0.05 * np.random.default_rng(2).standard_normal((args.queries, args.dim)).astype(np.float32)
    faiss.normalize_L2(q)
    k = 10
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(x)
    truth, flat_time = timed_search(flat, q, k)
    print(f"{args.n} x {args.dim} vectors ({args.clusters} clusters), {args.queries} queries, "
          f"{faiss.omp_get_max_threads()} threads; Flat: {flat_time:.2f} s")

    nlist = int(4 * np.sqrt(args.n))
    start = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(args.dim), args.dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x[np.random.default_rng(3).choice(args.n, min(args.n, 64 * nlist), replace=False)])
    ivf.add(x)
    print(f"IVF{nlist}: built in {time.perf_counter() - start:.1f} s")
    report("IVF", ivf, "nprobe", [1, 2, 4, 8, 16, 32, 64, 128], lambda v: setattr(ivf, "nprobe", v), q, k, truth, flat_time)

    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 200
    hnsw.add(x)
    print(f"HNSW32: built in {time.perf_counter() - start:.1f} s")
    report("HNSW", hnsw, "efSearch", [32, 48, 64, 96, 128, 192, 256], lambda v: setattr(hnsw.hnsw, "efSearch", v),
           q, k, truth, flat_time)


def report(name, index, knob, values, set_knob, q, k, truth, flat_time) -> None:
    for v in values:
        set_knob(v)
        ids, t = timed_search(index, q, k)
        r = recall_at(ids, truth, k)
        print(f"  {name} {knob}={v:<4d} recall@10 {r:.3f}  {t:.3f} s  speed-up {flat_time / t:6.1f}x")
        if r >= 0.95:
            print(f"{name}: recall@10 {r:.3f} >= 0.95 at {knob}={v}: speed-up {flat_time / t:.1f}x over Flat (goal >= 10x)")
            return
    print(f"{name}: recall@10 never reached 0.95 in the sweep")


if __name__ == "__main__":
    main()
