"""A YuBao-size run of the protocol in ``rerank`` mode on cached (random) frame states.

78 sites in 8 subgroups (1 + 7 x 11) x 50 sentences, 150 frames x 384 dims per utterance. Sentence
content is planted (a per-sentence direction shared by all sites, plus site and frame noise) so R@1
is neither 0 nor 100. Prints the rerank wall time (goal <= 10 min on 2 cores) and, on a subset of
subgroups, rerank vs full-SeqSim R@1 agreement (goal: within 1 point).
Usage: python bench/yubao_scale.py [--frames 150] [--dim 384] [--rerank-k 10] [--subset 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from speechalign.retrieval.vectors import l2_normalize
from speechalign.retrieval.yubao import SUBGROUPS, yubao_protocol


def synth(frames: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sentences = rng.standard_normal((50, dim)).astype(np.float32)
    sites, groups, sids, states = [], [], [], []
    for g in SUBGROUPS:
        group_shift = rng.standard_normal(dim).astype(np.float32)
        for s in range(1 if g == "zh_standard" else 11):
            site_shift = group_shift + 0.5 * rng.standard_normal(dim).astype(np.float32)
            for k in range(50):
                x = 0.35 * sentences[k] + site_shift + 1.2 * rng.standard_normal((frames, dim)).astype(np.float32)
                sites.append(f"{g}-{s}")
                groups.append(g)
                sids.append(f"{k:04d}")
                states.append(x.astype(np.float16).astype(np.float32))
    pooled = l2_normalize(np.stack([x.mean(0) for x in states]))
    return np.array(sites), np.array(groups), np.array(sids), states, pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rerank-k", type=int, default=10)
    parser.add_argument("--subset", type=int, default=3, help="subgroups compared against full SeqSim")
    args = parser.parse_args()
    sites, groups, sids, states, pooled = synth(args.frames, args.dim)
    print(f"{len(set(sites))} sites, {len(states)} utterances, {args.frames} frames x {args.dim} dims")
    start = time.perf_counter()
    rerank = yubao_protocol(sites, groups, sids, pooled, states, mode="rerank", rerank_k=args.rerank_k)
    elapsed = time.perf_counter() - start
    print(f"rerank (k={args.rerank_k}) full YuBao run: {elapsed / 60:.1f} min (goal <= 10 min); "
          f"mean R@1 {np.nanmean(rerank.table):.2f}%")
    keep = np.isin(groups, SUBGROUPS[1 : 1 + args.subset])
    sub = [states[i] for i in np.flatnonzero(keep)]
    start = time.perf_counter()
    full = yubao_protocol(sites[keep], groups[keep], sids[keep], pooled[keep], sub, mode="seqsim")
    full_time = time.perf_counter() - start
    part = yubao_protocol(sites[keep], groups[keep], sids[keep], pooled[keep], sub, mode="rerank", rerank_k=args.rerank_k)
    diff = np.nanmax(np.abs(full.table - part.table))
    print(f"subset {SUBGROUPS[1:1 + args.subset]}: full SeqSim {full_time:.0f} s, mean R@1 {np.nanmean(full.table):.2f}% "
          f"vs rerank {np.nanmean(part.table):.2f}%; max cell difference {diff:.2f} points (goal <= 1)")


if __name__ == "__main__":
    main()
