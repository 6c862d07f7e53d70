"""Training steps of the CPU demo's model with this machine's own kernels against the portable AVX2 kernels
(speechalign/train/arithmetic.py: ATEN_CPU_CAPABILITY, MKL_CBWR, ONEDNN_MAX_CPU_ISA; egs/synth/run.sh sets
them). Each setting runs in a fresh process (the variables are read when the libraries start), from the
same seed and the same batches of random audio, forward + backward + AdamW. Prints steps per second, the
ratio, and how far the losses and final weights of the two settings drift apart; a repeat of the native
setting must give identical weights.
Usage: python bench/portable_arithmetic.py [--steps 30] [--batch 8] [--seconds 5] [--threads 2] [--vocab 1795]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch
from speechalign.config import load_config
from speechalign.models import build_model
from speechalign.train.arithmetic import arithmetic, describe
steps, batch, seconds, threads, config, vocab = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[7])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model(load_config(config, []), vocab_size=vocab)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
n = int(seconds * 16000)
losses, elapsed = [], 0.0
for i in range(steps + 1):
    wav, lens = torch.randn(batch, n) * 0.1, torch.full((batch,), n)
    targets = [torch.randint(3, vocab, (int(seconds * 4),)).tolist() for _ in range(batch)]
    start = time.perf_counter()
    loss = model(wav, lens, targets)["loss"]
    opt.zero_grad()
    loss.backward()
    opt.step()
    if i:   # the first step warms up the kernels
        elapsed += time.perf_counter() - start
    losses.append(float(loss))
weights = torch.cat([p.detach().flatten() for p in model.parameters()])
torch.save(weights, sys.argv[6])
print(json.dumps({"steps_per_s": steps / elapsed, "losses": losses, "arithmetic": describe(arithmetic(torch.device("cpu")))}))
"""


def run(env_pins: dict, args, out: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(args.steps), str(args.batch), str(args.seconds),
                           str(args.threads), args.config, out, str(args.vocab)], env=env | env_pins,
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="recipes/synth_conformer_ctc.yaml")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=1795, help="output tokens (the demo's character vocabulary)")
    parser.add_argument("--work-dir", default="/tmp/portable_arithmetic")
    args = parser.parse_args()
    import torch

    from speechalign.train.arithmetic import PORTABLE

    os.makedirs(args.work_dir, exist_ok=True)
    paths = {name: os.path.join(args.work_dir, f"{name}.pt") for name in ("native", "native-again", "portable")}
    native = run({}, args, paths["native"])
    again = run({}, args, paths["native-again"])
    portable = run(PORTABLE, args, paths["portable"])
    w = {name: torch.load(p, weights_only=True) for name, p in paths.items()}
    print(f"native:   {native['arithmetic']}: {native['steps_per_s']:.2f} steps/s")
    print(f"portable: {portable['arithmetic']}: {portable['steps_per_s']:.2f} steps/s")
    print(f"ratio native / portable: {native['steps_per_s'] / portable['steps_per_s']:.2f}x "
          f"({args.steps} steps of {args.batch} x {args.seconds:g} s, {args.threads} threads)")
    print(f"native twice: identical weights {torch.equal(w['native'], w['native-again'])}, "
          f"max |loss difference| {max(abs(a - b) for a, b in zip(native['losses'], again['losses'])):.3g}")
    drift = [abs(a - b) for a, b in zip(native["losses"], portable["losses"])]
    first = next((i for i, d in enumerate(drift) if d), None)
    print(f"native vs portable: identical weights {torch.equal(w['native'], w['portable'])}, "
          f"max |weight difference| {float((w['native'] - w['portable']).abs().max()):.3g}, "
          f"max |loss difference| {max(drift):.3g} (first at step {first})")


if __name__ == "__main__":
    main()
