"""ONNX (onnxruntime) vs PyTorch CTC greedy transcription speed on CPU, one utterance at a time as
``speechalign transcribe`` runs, with the largest |log-prob difference| and the transcript agreement.

Both use the same number of intra-op threads. On a shared machine prefer --threads 1: under
oversubscription torch's OpenMP threads slow down far more than onnxruntime's (measured here: 10x vs 2x),
which turns the ratio into a measure of contention. Without --onnx the experiment is exported to a temporary
directory first; without --cuts the audio is random noise of 1-6 s.
Usage: python bench/onnx_speed.py --exp-dir exp/synth/conformer_ctc --cuts exp/synth/data/synth_cuts_test.jsonl.gz
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from speechalign.data.dataset import collate_audio
from speechalign.decode.ctc import ctc_greedy
from speechalign.models.experiment import load_experiment
from speechalign.models.export import export
from speechalign.models.onnx_ctc import OnnxCTC


def load_utterances(cuts: str | None, max_utts: int, min_samples: int) -> list[np.ndarray]:
    if cuts is None:
        rng = np.random.default_rng(0)
        return [(0.1 * rng.standard_normal(int(rng.uniform(1, 6) * 16000))).astype(np.float32) for _ in range(max_utts)]
    from speechalign.data.manifest import load_cuts

    audio = [c.load_audio().mean(axis=0).astype(np.float32) for c in load_cuts(cuts).subset(first=max_utts)]
    return [a for a in audio if len(a) >= min_samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True)
    parser.add_argument("--checkpoint", default="latest")
    parser.add_argument("--onnx", help="an existing `speechalign export --format onnx` dir of this checkpoint")
    parser.add_argument("--cuts", help="manifest to take utterances from (default: random noise)")
    parser.add_argument("--max-utts", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds; the best counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, tokenizer, model = load_experiment(args.exp_dir, args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = args.onnx
        if onnx_dir is None:
            start = time.perf_counter()
            onnx_dir = export(args.exp_dir, Path(tmp) / "onnx", "onnx", args.checkpoint)
            print(f"export: {time.perf_counter() - start:.1f} s")
        onnx = OnnxCTC(onnx_dir, num_threads=args.threads)
        utts = load_utterances(args.cuts, args.max_utts, getattr(model.encoder, "min_samples", 1))
        batches = [collate_audio([u]) for u in utts]

        def run_torch(wav, lens):
            with torch.inference_mode():
                enc = model.encode(wav, lens)
                lp = model.ctc_log_probs(enc)
            return lp, enc.lengths, tokenizer.decode(ctc_greedy(lp, enc.lengths)[0])

        def run_onnx(wav, lens):
            lp, n = onnx.log_probs(wav, lens)
            return lp, n, tokenizer.decode(ctc_greedy(lp, n)[0])

        for fn in (run_torch, run_onnx):   # warm-up: first-call allocations and kernel selection
            fn(*batches[0])
        # Alternating rounds, best round per engine: a shared machine's load changes over a run.
        timings, outputs = {"pytorch": float("inf"), "onnx": float("inf")}, {}
        for _ in range(args.rounds):
            for name, fn in (("pytorch", run_torch), ("onnx", run_onnx)):
                start = time.perf_counter()
                outputs[name] = [fn(*b) for b in batches]
                timings[name] = min(timings[name], time.perf_counter() - start)
        # The yardstick for both: the same model in float64. A trained model's large activations make
        # float32 rounding itself reach ~1e-4 in log-probability, so the question is which side it is on.
        model.double()
        with torch.inference_mode():
            exact = [model.ctc_log_probs(model.encode(w.double(), n)).float() for w, n in batches]
    audio = sum(len(u) for u in utts) / 16000

    def flat(logps: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([lp[0, : int(n[1][0])].flatten() for lp, n in zip(logps, outputs["pytorch"])] + [torch.zeros(1)])

    ref, got = flat([a[0] for a in outputs["pytorch"]]), flat([b[0] for b in outputs["onnx"]])
    delta, exact = (ref - got).abs(), flat(exact)
    # What decoding sees is the difference among plausible tokens (p > 1e-4) and in probability.
    plausible = float(delta[ref > -9.21].max())
    prob = float((ref.exp() - got.exp()).abs().max())
    same = sum(a[2] == b[2] for a, b in zip(outputs["pytorch"], outputs["onnx"]))
    print(f"{len(utts)} utterances, {audio:.1f} s of audio, {args.threads} threads, CTC greedy, one at a time, "
          f"best of {args.rounds} rounds")
    print(f"pytorch    : {timings['pytorch']:.2f} s (RTF {timings['pytorch'] / audio:.4f})")
    print(f"onnxruntime: {timings['onnx']:.2f} s (RTF {timings['onnx'] / audio:.4f})")
    print(f"speed-up (pytorch time / onnx time): {timings['pytorch'] / timings['onnx']:.2f}x")
    print(f"max |log-prob difference|: {float(delta.max()):.2e} (tokens with p > 1e-4: {plausible:.2e}); "
          f"max |probability difference|: {prob:.2e}; identical transcripts: {same}/{len(utts)}")
    print(f"max |log-prob difference| from float64 PyTorch: pytorch float32 {float((ref - exact).abs().max()):.2e}, "
          f"onnxruntime {float((got - exact).abs().max()):.2e}")


if __name__ == "__main__":
    main()
