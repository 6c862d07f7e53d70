"""Training throughput: lhotse DynamicBucketingSampler vs unsorted fixed-size batches.

Both feed the same conformer model (the CPU demo's size) for forward + backward over the same
random-duration corpus (1-12 s), after an untimed warm-up of both; prints real audio seconds processed
per wall-clock second and the ratio (goal >= 1.5x). Padding is the waste bucketing removes.
Usage: python bench/bucketing.py [--num-cuts 160] [--batch 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler

from speechalign.config import load_config
from speechalign.data.dataset import SpeechDataset
from speechalign.models import build_model
from speechalign.text import CharTokenizer


def make_cuts(root: Path, n: int, seed: int = 0) -> CutSet:
    rng = np.random.default_rng(seed)
    cuts = []
    for i in range(n):
        seconds = float(rng.uniform(1.0, 12.0))
        path = root / f"{i}.flac"
        sf.write(path, (rng.standard_normal(int(seconds * 16000)) * 0.05).astype(np.float32), 16000)
        cut = Recording.from_file(path).to_cut()
        cut.supervisions = [SupervisionSegment(cut.id, cut.recording_id, 0, cut.duration,
                                               text="甲乙丙" * max(1, int(seconds)), language="x")]
        cuts.append(cut)
    return CutSet.from_cuts(cuts)


def run(model, sampler, dataset, max_batches: int) -> tuple[float, float]:
    audio, start = 0.0, time.perf_counter()
    for i, cuts in enumerate(sampler):
        if i == max_batches:
            break
        batch = dataset[cuts]
        model(batch.wav, batch.wav_lens, batch.targets)["loss"].backward()
        audio += float(batch.wav_lens.sum()) / 16000
    elapsed = time.perf_counter() - start
    return audio / elapsed, audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-cuts", type=int, default=160)
    parser.add_argument("--batch", type=int, default=8, help="cuts per unsorted batch")
    parser.add_argument("--config", default="recipes/synth_conformer_ctc.yaml")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = load_config(args.config)
    model = build_model(cfg, vocab_size=100)
    dataset = SpeechDataset(CharTokenizer.build(["甲乙丙"]))
    with tempfile.TemporaryDirectory() as tmp:
        cuts = make_cuts(Path(tmp), args.num_cuts)
        mean_batch_seconds = args.batch * float(np.mean([c.duration for c in cuts]))
        fixed = SimpleCutSampler(cuts, max_cuts=args.batch, shuffle=True, seed=0)
        bucketed = DynamicBucketingSampler(cuts, max_duration=mean_batch_seconds, num_buckets=8, shuffle=True, seed=0)
        n_batches = args.num_cuts // args.batch
        for sampler in (fixed, bucketed):  # warm-up (allocator, kernels), so neither run pays it alone
            run(model, sampler, dataset, 2)
        fixed_rate, fixed_audio = run(model, fixed, dataset, n_batches)
        bucket_rate, bucket_audio = run(model, bucketed, dataset, n_batches)
    print(f"{args.num_cuts} cuts of 1-12 s, batches of {args.batch} cuts vs max_duration {mean_batch_seconds:.0f} s, "
          f"{torch.get_num_threads()} threads")
    print(f"unsorted fixed-size : {fixed_rate:7.1f} audio-s/s ({fixed_audio:.0f} s of audio)")
    print(f"dynamic bucketing   : {bucket_rate:7.1f} audio-s/s ({bucket_audio:.0f} s of audio)")
    print(f"ratio bucketing/fixed: {bucket_rate / fixed_rate:.2f}x (goal >= 1.5x)")


if __name__ == "__main__":
    main()
