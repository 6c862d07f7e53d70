#!/usr/bin/env python
"""Soak test of resuming: kill -9 a training at random steps, resume it each time, and compare its final
weights bit for bit (cmp) with an uninterrupted run of the same command.

    tools/soak_resume.py --out exp/soak --kills 5 -- --config recipes/real_whisper_base_hybrid.yaml \\
        --set model.whisper.pretrained=exp/goo-gi/whisper-base --set model.decoder.pretrained=... ...

Everything after ``--`` is passed to ``speechalign train`` (both runs get the same arguments plus their own
--exp-dir). The kill points are drawn (``--seed``) from the steps before the end, each after the previous
one, plus a random fraction of a step (so a kill may land mid-step or mid-checkpoint-write), and land between
checkpoints, so every resume redoes some steps. ``--reference DIR`` reuses a finished
uninterrupted run instead of training one. Exit status 0 when the weights are identical.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STEP = re.compile(rb"train:.*?\|\s*(\d+)/(\d+) \[")
RESUMED = re.compile(rb"resumed from \S+ \(step (\d+)")


class Run:
    """``speechalign train`` in its own process group, its progress read from the tqdm bar on stderr."""

    def __init__(self, args: list[str], log: Path):
        self.step, self.total, self.resumed_at = 0, 0, None
        self.step_seconds, self._stepped_at = 0.0, None
        self.log = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "speechalign.cli", "train", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):
            self.log.write(chunk)
            for m in STEP.finditer(chunk):
                self._saw(int(m.group(1)), int(m.group(2)))
            m = RESUMED.search(chunk)
            if m:
                self.resumed_at = int(m.group(1))

    def _saw(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step > self.step and self._stepped_at is not None:
            self.step_seconds = (now - self._stepped_at) / (step - self.step)
        if step > self.step:
            self._stepped_at = now
        self.step, self.total = step, total

    def kill_at(self, step: int, fraction: float, timeout: float) -> bool:
        """SIGKILL the whole group ``fraction`` of a step after the bar reaches ``step``; False if the run
        ended first."""
        deadline = time.monotonic() + timeout
        while self.step < step:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        time.sleep(fraction * self.step_seconds)
        if self.proc.poll() is not None:
            return False
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.finish()
        return True

    def finish(self) -> int:
        code = self.proc.wait()
        self.reader.join()
        self.log.close()
        return code


def final_weights(exp: Path) -> Path:
    steps = sorted((exp / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    if not steps:
        raise SystemExit(f"soak: {exp} has no checkpoint")
    return steps[-1] / "model.safetensors"


def identical(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def soak(train_args: list[str], out: Path, kills: int, seed: int, reference: Path | None, timeout: float) -> bool:
    if (out / "killed").exists():
        raise SystemExit(f"soak: {out / 'killed'} exists from an earlier soak; give a new --out")
    out.mkdir(parents=True, exist_ok=True)
    if reference is None:
        reference = out / "reference"
        print(f"reference: uninterrupted run in {reference}", flush=True)
        if Run([*train_args, "--exp-dir", str(reference)], out / "reference.log").finish() != 0:
            raise SystemExit(f"soak: the reference run failed; see {out / 'reference.log'}")
    killed, log = out / "killed", out / "killed.log"
    total = int(final_weights(reference).parent.name.split("-")[1])
    rng = random.Random(seed)
    points = [(step, round(rng.random(), 2)) for step in sorted(rng.sample(range(1, total), min(kills, total - 1)))]
    print(f"kill points (seed {seed}): steps {', '.join(f'{s} + {f:.2f}' for s, f in points)} of {total}", flush=True)
    for i, (step, fraction) in enumerate(points, 1):
        run = Run([*train_args, "--exp-dir", str(killed), "--resume"], log)
        if not run.kill_at(step, fraction, timeout):
            raise SystemExit(f"soak: the run ended before step {step}; see {log}")
        start = "step 0" if run.resumed_at is None else f"step-{run.resumed_at}"
        print(f"kill {i}: kill -9 at step {step} + {fraction:.2f} of a step ({run.step_seconds:.2f} s/step; "
              f"this leg resumed from {start})", flush=True)
    run = Run([*train_args, "--exp-dir", str(killed), "--resume"], log)
    if run.finish() != 0:
        raise SystemExit(f"soak: the last resume failed; see {log}")
    a, b = final_weights(reference), final_weights(killed)
    same = identical(a, b)
    print(f"final weights: cmp {a} {b}: {'identical' if same else 'DIFFER'}", flush=True)
    return same


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                usage="%(prog)s --out DIR [--kills N] [--seed S] [--reference DIR] -- TRAIN ARGS")
    p.add_argument("--out", type=Path, required=True, help="soak directory (reference/, killed/, logs)")
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="draws the kill points")
    p.add_argument("--reference", type=Path, help="a finished uninterrupted run of the same arguments")
    p.add_argument("--timeout", type=float, default=24 * 3600, help="seconds one leg may take to reach its kill point")
    args = p.parse_args(ours)
    if not train_args:
        p.error("give the training arguments after --, e.g. -- --config recipes/tiny.yaml --set ...")
    return 0 if soak(train_args, args.out, args.kills, args.seed, args.reference, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
