"""Peak memory of building the training sampler and iterating one epoch of batch metadata (no audio),
on a large manifest: the old eager path (every cut in a list) vs the trainer's lazy path (streaming scan
for usable cuts and duplicate ids, lazy filter, bucketing buffer).

Writes a manifest of ``--num-cuts`` cuts by repeating the cuts of ``--cuts`` under new ids, then runs
each path in a fresh child process and reads its peak RSS from the kernel. Each child also reports its
RSS after importing torch and lhotse, before reading anything: with the CUDA build of torch that floor
alone is about 0.5 GB, so the cost of the manifest path is the peak above it. Goal: lazy <= 1/5 of eager.
Usage: python bench/manifest_memory.py --cuts exp/real/data/goo-gi_cuts_train.jsonl.gz [--num-cuts 200000]
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAX_DURATION, FRAME_SHIFT = 200.0, 0.04


def write_large_manifest(src: Path, out: Path, num_cuts: int) -> None:
    from lhotse.serialization import SequentialJsonlWriter

    from speechalign.data.manifest import iter_cuts

    cuts = list(iter_cuts(src))
    with SequentialJsonlWriter(out) as writer:
        for n, cut in enumerate(itertools.islice(itertools.cycle(cuts), num_cuts)):
            copy = cut.with_id(f"{cut.id}-{n // len(cuts)}")
            writer.write(copy)


def eager(path: Path) -> int:
    """The trainer before the lazy path: load_cuts into memory, a filtered list, the sampler over it."""
    from lhotse import CutSet

    from speechalign.data.dataset import UsableForTraining, train_sampler
    from speechalign.data.manifest import iter_cuts

    usable = UsableForTraining(0.3, 20.0, FRAME_SHIFT)
    cuts = CutSet.from_cuts([c for c in iter_cuts(path) if usable(c)])
    sampler = train_sampler(cuts, MAX_DURATION, 10, True, 0)
    return sum(1 for _ in sampler)


def lazy(path: Path) -> int:
    """The trainer's path: a streaming scan, then the lazy filtered CutSet under the bucketing sampler."""
    from speechalign.data.dataset import UsableForTraining, train_sampler
    from speechalign.data.manifest import DuplicateIds, open_cuts

    usable = UsableForTraining(0.3, 20.0, FRAME_SHIFT)
    dups = DuplicateIds()
    for cut in open_cuts(path):
        dups.add(cut.id)
    assert not dups.find(open_cuts(path))
    sampler = train_sampler(open_cuts(path).filter(usable), MAX_DURATION, 10, True, 0)
    return sum(1 for _ in sampler)


def run_child(mode: str, path: Path) -> tuple[float, float, list[str]]:
    """(peak RSS MB, seconds, child's output: batches and import floor MB) of one path in a fresh interpreter."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, "--cuts", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read().split()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{mode} child failed with status {status}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="source manifest (its cuts are repeated)")
    parser.add_argument("--num-cuts", type=int, default=200_000, help="cuts in the generated manifest")
    parser.add_argument("--child", choices=("eager", "lazy"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import resource

        import lhotse.dataset  # noqa: F401  (the floor: every library the paths use, nothing read yet)
        import torch  # noqa: F401

        floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print({"eager": eager, "lazy": lazy}[args.child](args.cuts), f"{floor:.0f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "large_cuts_train.jsonl.gz"
        write_large_manifest(args.cuts, big, args.num_cuts)
        print(f"{args.num_cuts} cuts ({big.stat().st_size / 1e6:.1f} MB gzipped), sampler + one epoch of batch metadata")
        print(f"{'path':<8}{'peak RSS MB':>13}{'import floor':>14}{'above floor':>13}{'seconds':>10}{'batches':>10}")
        peak, above = {}, {}
        for mode in ("eager", "lazy"):
            rss, secs, (batches, floor) = run_child(mode, big)
            peak[mode], above[mode] = rss, rss - float(floor)
            print(f"{mode:<8}{rss:>13.0f}{float(floor):>14.0f}{above[mode]:>13.0f}{secs:>10.1f}{batches:>10}", flush=True)
    print(f"lazy / eager, memory above the import floor: {above['lazy'] / above['eager']:.3f} (goal <= 0.2); "
          f"total peak RSS: {peak['lazy'] / peak['eager']:.3f}")


if __name__ == "__main__":
    main()
