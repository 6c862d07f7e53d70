"""SeqSim on a 50 x 50 block of 3-6 s utterances: vectorized block vs the per-pair loop.

The per-pair baseline is the reference implementation's approach with its shape bug fixed: one
Python call per utterance pair, each computing the T1 x T2 cosine matrix with broadcasting
(``F.cosine_similarity(x[:, None], y[None], dim=-1)``). Prints the speed-up (goal >= 100x), the max
score difference, and the achieved GFLOP/s vs this machine's plain torch matmul rate (goal >= 50%).
Usage: python bench/seqsim.py [--n 50] [--dim 384] [--frame-rate 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from speechalign.retrieval.seqsim import FrameSet, seqsim_block


def per_pair(qs: list[torch.Tensor], gs: list[torch.Tensor]) -> np.ndarray:
    out = np.zeros((len(qs), len(gs)), np.float32)
    for i, x in enumerate(qs):
        for j, y in enumerate(gs):
            sim = F.cosine_similarity(x[:, None, :], y[None, :, :], dim=-1)
            p, r = sim.max(dim=1).values.mean(), sim.max(dim=0).values.mean()
            out[i, j] = float(2 * p * r / (p + r))
    return out


def matmul_rate(rows: int, cols: int, dim: int, repeats: int = 3) -> float:
    a, b = torch.randn(rows, dim), torch.randn(dim, cols)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * cols * dim * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--frame-rate", type=int, default=50, help="encoder frames per second")
    parser.add_argument("--baseline-rows", type=int, default=10, help="query rows timed for the slow baseline")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    lengths = [lambda: int(rng.uniform(3, 6) * args.frame_rate)] * 2
    # A shared direction plus noise, so cosines are positive and F1 well defined, as for real states.
    qs = [(rng.standard_normal((lengths[0](), args.dim)) + 0.5).astype(np.float32) for _ in range(args.n)]
    gs = [(rng.standard_normal((lengths[1](), args.dim)) + 0.5).astype(np.float32) for _ in range(args.n)]
    start = time.perf_counter()
    fast = seqsim_block(FrameSet.from_list(qs), FrameSet.from_list(gs))["f1"]
    fast_time = time.perf_counter() - start
    rows = min(args.baseline_rows, args.n)
    start = time.perf_counter()
    slow = per_pair([torch.from_numpy(q) for q in qs[:rows]], [torch.from_numpy(g) for g in gs])
    slow_time = (time.perf_counter() - start) * args.n / rows
    frames_q, frames_g = sum(map(len, qs)), sum(map(len, gs))
    flops = 2.0 * frames_q * frames_g * args.dim
    achieved = flops / fast_time / 1e9
    peak = matmul_rate(min(frames_q, 8192), min(frames_g, 8192), args.dim)
    print(f"SeqSim {args.n}x{args.n} block, 3-6 s at {args.frame_rate} frames/s, dim {args.dim}, "
          f"{torch.get_num_threads()} threads ({frames_q} x {frames_g} frames)")
    print(f"per-pair loop : {slow_time:8.2f} s (extrapolated from {rows} query rows)")
    print(f"vectorized    : {fast_time:8.3f} s")
    print(f"speed-up      : {slow_time / fast_time:.0f}x (goal >= 100x)")
    print(f"max |F1 difference| on the timed rows: {np.abs(fast[:rows] - slow).max():.2e}")
    print(f"achieved {achieved:.1f} GFLOP/s vs torch matmul {peak:.1f} GFLOP/s = {100 * achieved / peak:.0f}% (goal >= 50%)")


if __name__ == "__main__":
    main()
