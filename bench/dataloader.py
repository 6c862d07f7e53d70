"""Audio-seconds per second delivered by the training loader, per configuration, on one corpus.

The same sampler, dataset and DataLoader the trainer builds, iterated without a model:
  * 0 vs 1 vs 2 loader workers (front end in the model: the loader decodes and resamples);
  * where the front end runs: in the loader (fbank, Whisper log-mel) vs precomputed lilcom features;
  * how the manifest is read: eager (every cut in memory, the old path) vs lazy vs Shar shards.
Timed from the loader's start (worker start-up and the sampler's first buffer included), after one untimed
pass that warms the page cache. Then a few training steps of a small model show the
trainer's own split of step time into data wait and compute, with 0 and with 2 workers.
Goal on 2 cores: 2 workers >= 1.7x the audio-seconds per second of 0 workers.
Usage: python bench/dataloader.py --cuts exp/real/data/goo-gi_cuts_train.jsonl.gz [--batches 40]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import yaml
from lhotse import CutSet

from speechalign.config import load_config
from speechalign.data.dataset import SpeechDataset, make_loader, train_sampler
from speechalign.data.features import FrontendConfig, compute_features
from speechalign.data.manifest import iter_cuts, open_cuts
from speechalign.data.shar import export_shar, open_shar
from speechalign.text import CharTokenizer
from speechalign.train.trainer import train


def worker_rss_mb() -> list[float]:
    """Resident memory of this process's children (the loader workers; shared pages counted)."""
    pid = os.getpid()
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for child in children:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        out.append(kb / 1024)
    return out


def delivered(cuts: CutSet, tokenizer, workers: int, batches: int, max_duration: float,
              frontend: FrontendConfig | None = None, precomputed: bool = False) -> tuple[float, list]:
    sampler = train_sampler(cuts, max_duration, num_buckets=10, shuffle=True, seed=0)
    loader = make_loader(SpeechDataset(tokenizer, 1472, frontend, precomputed), sampler, workers)
    seconds, rss, start = 0.0, [], time.perf_counter()
    for i, batch in enumerate(loader, 1):
        seconds += batch.seconds
        if i == batches // 2:
            rss = worker_rss_mb()
        if i >= batches:
            break
    return seconds / (time.perf_counter() - start), rss


def step_split(cuts_path: Path, workers: int, steps: int, root: Path) -> tuple[float, float]:
    """Data wait and compute seconds the trainer logged over ``steps`` steps of a small conformer."""
    cfg = load_config(Path("recipes/synth_conformer_ctc.yaml"), [
        f"data.train=[{{cuts: [{cuts_path}]}}]", "data.dev=[]", f"data.num_workers={workers}",
        f"train.max_steps={steps}", f"train.save_every={steps}", "train.valid_each_epoch=false",
        "train.valid_every=100000", "train.max_minutes=0", "data.max_duration=40", "data.speed_perturb=[]"])
    last = train(cfg, root / f"train-w{workers}")
    metrics = yaml.safe_load((last / "metrics.yaml").read_text(encoding="utf-8"))
    return metrics["train_data_wait_s"], metrics["train_compute_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="a training manifest with real audio")
    parser.add_argument("--batches", type=int, default=40, help="timed batches per configuration")
    parser.add_argument("--max-duration", type=float, default=60.0, help="seconds of audio per batch")
    parser.add_argument("--steps", type=int, default=12, help="training steps for the data-wait split (0 = skip)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tokenizer = CharTokenizer.build(c.supervisions[0].text or "" for c in iter_cuts(args.cuts))
    rows = []

    def row(name: str, workers: int, rate: float, rss: list, base: float | None) -> None:
        ratio = f"{rate / base:.2f}x" if base else "1.00x"
        mem = f"{max(rss):.0f}" if rss else "-"
        rows.append((name, workers, rate, ratio, mem))
        print(f"{name:<34}{workers:>8}{rate:>14.1f}{ratio:>10}{mem:>14}", flush=True)

    print(f"corpus: {args.cuts}, {args.batches} timed batches of <= {args.max_duration:.0f} s, {os.cpu_count()} cores")
    print(f"{'configuration':<34}{'workers':>8}{'audio-s/s':>14}{'ratio':>10}{'worker RSS MB':>14}")
    lazy = open_cuts(args.cuts)
    # One untimed pass first, so no configuration pays for a cold page cache.
    delivered(lazy, tokenizer, 2, args.batches, args.max_duration)
    base = None
    for workers in (0, 1, 2):
        rate, rss = delivered(lazy, tokenizer, workers, args.batches, args.max_duration)
        base = base or rate
        row("waveforms (front end in model)", workers, rate, rss, base)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind in ("fbank", "whisper"):
            front = FrontendConfig(kind, 80)
            kind_base = None
            for workers in (0, 2):
                rate, rss = delivered(lazy, tokenizer, workers, args.batches, args.max_duration, front)
                kind_base = kind_base or rate
                row(f"{kind} computed in the loader", workers, rate, rss, kind_base)
        start = time.perf_counter()
        stored = compute_features(args.cuts, tmp / "feats", FrontendConfig("fbank", 80), num_jobs=2)
        once = time.perf_counter() - start
        pre_base = None
        for workers in (0, 2):
            rate, rss = delivered(open_cuts(stored), tokenizer, workers, args.batches, args.max_duration,
                                  FrontendConfig("fbank", 80), precomputed=True)
            pre_base = pre_base or rate
            row("fbank precomputed (lilcom)", workers, rate, rss, pre_base)
        print(f"  (computing the features once took {once:.1f} s)")
        eager = CutSet.from_cuts(list(iter_cuts(args.cuts)))
        shar = export_shar([args.cuts], tmp / "shar", shard_size=200)
        for name, cuts in (("eager manifest", eager), ("lazy manifest", lazy), ("Shar shards", open_shar(shar))):
            rate, rss = delivered(cuts, tokenizer, 2, args.batches, args.max_duration)
            row(name, 2, rate, rss, base)
        if args.steps:
            print(f"\ntrainer's step-time split over {args.steps} steps (small conformer, this corpus):")
            for workers in (0, 2):
                wait, compute = step_split(args.cuts, workers, args.steps, tmp)
                print(f"  {workers} workers: data wait {wait:.1f} s ({wait / (wait + compute):.1%} of step time), "
                      f"compute {compute:.1f} s")
    two = next(r for r in rows if r[0].startswith("waveforms") and r[1] == 2)
    print(f"\n2 workers vs 0: {two[2] / base:.2f}x (goal >= 1.7x)")


if __name__ == "__main__":
    main()
