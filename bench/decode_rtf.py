"""Real-time factor of batched CTC prefix beam search (beam 10) on CPU, and the batched speed-up.

Decodes a manifest with a trained experiment twice: batched (encoder over padded batches) and one
utterance at a time. RTF = decoding wall time / audio duration (goal <= 0.05 for the demo model).
Usage: python bench/decode_rtf.py --exp-dir exp/synth/conformer_ctc --cuts exp/synth/data/synth_cuts_test.jsonl.gz
"""

from __future__ import annotations

import argparse
import time

import torch

from speechalign.data.dataset import eval_loader
from speechalign.data.manifest import load_cuts
from speechalign.decode.run import decode_batch
from speechalign.models.experiment import load_experiment


def run(model, cuts, max_duration: float | None, beam: int, max_cuts: int | None = None) -> tuple[float, float, list]:
    audio, hyps, start = 0.0, [], time.perf_counter()
    for batch in eval_loader(cuts, max_duration, max_cuts=max_cuts):
        hyps += decode_batch(model, batch.wav, batch.wav_lens, "ctc_prefix_beam", beam, 0.5)
        audio += float(batch.wav_lens.sum()) / 16000
    return time.perf_counter() - start, audio, hyps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True)
    parser.add_argument("--cuts", required=True)
    parser.add_argument("--checkpoint", default="latest")
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--max-utts", type=int, default=200)
    args = parser.parse_args()
    _, _, model = load_experiment(args.exp_dir, args.checkpoint)
    cuts = load_cuts(args.cuts).subset(first=args.max_utts)
    with torch.inference_mode():
        batched, audio, hyps_b = run(model, cuts, 120.0, args.beam)
        single, _, hyps_s = run(model, cuts, None, args.beam, max_cuts=1)
    print(f"{len(cuts)} utterances, {audio / 60:.1f} min of audio, beam {args.beam}, {torch.get_num_threads()} threads")
    print(f"batched      : RTF {batched / audio:.4f} (goal <= 0.05)")
    print(f"one at a time: RTF {single / audio:.4f}")
    print(f"batched speed-up: {single / batched:.2f}x; identical hypotheses: {sorted(map(tuple, hyps_b)) == sorted(map(tuple, hyps_s))}")


if __name__ == "__main__":
    main()
