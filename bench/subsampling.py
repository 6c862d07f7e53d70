"""Conformer training step by conv subsampling: WeNet's layout (4x, d_model channels) against narrower
convolutions and 8x subsampling (12.5 frames/s: every layer above sees half the frames).

Same model otherwise (the CPU demo recipe), same batch of random audio; times forward + backward of the
full hybrid CTC/attention loss and prints seconds per step, each variant's speed-up over the first, and
its parameters. Usage: python bench/subsampling.py [--batch 5] [--seconds 8] [--steps 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from speechalign.config import load_config
from speechalign.models import build_model


def step_time(model, wav, lens, targets, steps: int) -> float:
    model(wav, lens, targets)["loss"].backward()
    start = time.perf_counter()
    for _ in range(steps):
        model(wav, lens, targets)["loss"].backward()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="recipes/synth_conformer_ctc.yaml")
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    n = int(args.seconds * 16000)
    wav, lens = torch.randn(args.batch, n) * 0.1, torch.full((args.batch,), n)
    targets = [torch.randint(3, 100, (int(args.seconds * 4),)).tolist() for _ in range(args.batch)]
    times, sizes = {}, {}
    for channels, rate in ((None, 4), (64, 4), (32, 4), (32, 8)):
        cfg = load_config(args.config, [f"model.conformer.subsampling_channels={channels or 'null'}",
                                        f"model.conformer.subsampling_rate={rate}"])
        torch.manual_seed(0)
        model = build_model(cfg, vocab_size=100)
        label = f"{rate}x, {channels or cfg.model.conformer.d_model} channels"
        times[label] = step_time(model, wav, lens, targets, args.steps)
        sizes[label] = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"batch {args.batch} x {args.seconds:.0f} s, {torch.get_num_threads()} threads, forward + backward")
    base = next(iter(times.values()))
    for label, t in times.items():
        print(f"{label:18s}: {t:6.3f} s/step, {base / t:4.2f}x ({sizes[label]:.2f} M parameters)")


if __name__ == "__main__":
    main()
