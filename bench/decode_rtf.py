"""Real-time factor of CTC beam search (beam 10) on CPU: the library search (torchaudio/flashlight,
batched) against the Python prefix search (the reference), and batched against one utterance at a time.

Decodes a manifest with a trained experiment: (1) Python reference, batched encoder; (2) library,
batched; (3) library, one utterance at a time; with --lm also (4) library + LM. Prints RTF (decoding
wall time / audio duration, encoder included), speed-ups, the share of utterances where library and
reference agree, and per-variety CER of each (what must stay equal: CER within 0.2 points).
Usage: python bench/decode_rtf.py --exp-dir exp/synth/conformer_ctc --cuts exp/synth/data/synth_cuts_test.jsonl.gz \\
           [--lm exp/synth/lm/char4.arpa --lm-weight 0.5 --word-score 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from speechalign.data.dataset import eval_loader
from speechalign.data.manifest import load_cuts
from speechalign.decode.cer import CerScorer
from speechalign.decode.ctc import ctc_prefix_beam
from speechalign.decode.lm import LMOptions
from speechalign.decode.batch import decode_batch, make_ctc_search
from speechalign.models.experiment import load_experiment


def run(model, tokenizer, cuts, max_duration: float | None, beam: int, search, max_cuts: int | None = None):
    audio, hyps, start, scorer = 0.0, {}, time.perf_counter(), CerScorer()
    for batch in eval_loader(cuts, max_duration, max_cuts=max_cuts):
        out = decode_batch(model, batch.wav, batch.wav_lens, "ctc_prefix_beam", beam, 0.5, ctc_search=search)
        audio += float(batch.wav_lens.sum()) / 16000
        for i, d, r, h in zip(batch.ids, batch.dialects, batch.texts, out):
            hyps[i] = tuple(h)
            scorer.add(r, tokenizer.decode(h), d)
    return time.perf_counter() - start, audio, hyps, scorer


def search_only(model, cuts, beam: int, search, rounds: int = 3) -> tuple[float, float, float]:
    """Search seconds on cached CTC log-probs, the best of ``rounds`` (one pass is under a second, and a
    shared machine's load swings single timings by 30 %): Python reference per utterance, library per
    padded batch, library per utterance (encoder time excluded, the encoder being the same for all three)."""
    encoded = []
    for batch in eval_loader(cuts, 120.0):
        enc = model.encode(batch.wav, batch.wav_lens)
        encoded.append((model.ctc_log_probs(enc), enc.lengths))

    def python_reference():
        for lp, lens in encoded:
            for i, n in enumerate(lens.tolist()):
                ctc_prefix_beam(lp[i, :n].numpy(), beam)

    def library_batched():
        for lp, lens in encoded:
            search(lp, lens)

    def library_single():
        for lp, lens in encoded:
            for i, n in enumerate(lens.tolist()):
                search(lp[i : i + 1, :n], lens[i : i + 1])

    def best(fn) -> float:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    return best(python_reference), best(library_batched), best(library_single)


def encoder_only(model, cuts) -> tuple[float, float]:
    """Encoder seconds batched vs one utterance at a time: the ceiling of any end-to-end batching gain
    when the search costs the same either way."""
    times = []
    for max_duration, max_cuts in ((120.0, None), (None, 1)):
        start = time.perf_counter()
        for batch in eval_loader(cuts, max_duration, max_cuts=max_cuts):
            model.ctc_log_probs(model.encode(batch.wav, batch.wav_lens))
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def cer_line(scorer) -> str:
    return "  ".join(f"{d} {100 * c.cer:.2f}" for d, c in scorer.rows())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True)
    parser.add_argument("--cuts", required=True)
    parser.add_argument("--checkpoint", default="latest")
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--max-utts", type=int, default=200)
    parser.add_argument("--lm", type=Path, help="character LM from train-lm: also decode with it")
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--word-score", type=float, default=0.0)
    args = parser.parse_args()
    _, tokenizer, model = load_experiment(args.exp_dir, args.checkpoint)
    cuts = load_cuts(args.cuts).subset(first=args.max_utts)
    lib = make_ctc_search(tokenizer, "ctc_prefix_beam", args.beam, None, force_cpu=True)
    with torch.inference_mode():
        py_t, audio, py_h, py_s = run(model, tokenizer, cuts, 120.0, args.beam, None)
        lib_t, _, lib_h, lib_s = run(model, tokenizer, cuts, 120.0, args.beam, lib)
        one_t, _, one_h, _ = run(model, tokenizer, cuts, None, args.beam, lib, max_cuts=1)
        py_search, lib_search, lib_single = search_only(model, cuts, args.beam, lib)
        enc_batched, enc_single = encoder_only(model, cuts)
        if args.lm:
            fused = make_ctc_search(tokenizer, "ctc_prefix_beam", args.beam,
                                    LMOptions(args.lm, args.lm_weight, args.word_score), force_cpu=True)
            lm_t, _, _, lm_s = run(model, tokenizer, cuts, 120.0, args.beam, fused)
    agree = sum(py_h[k] == lib_h[k] for k in py_h) / len(py_h)
    print(f"{len(cuts)} utterances, {audio / 60:.1f} min of audio, beam {args.beam}, {torch.get_num_threads()} threads")
    print(f"python prefix search, batched : RTF {py_t / audio:.4f}")
    print(f"library search, batched       : RTF {lib_t / audio:.4f} (goal <= 0.05)")
    print(f"library search, one at a time : RTF {one_t / audio:.4f}")
    print(f"end to end (encoder + search): library vs python {py_t / lib_t:.2f}x; batched vs one at a time "
          f"{one_t / lib_t:.2f}x (goal >= 2x); batched == one at a time: {lib_h == one_h}")
    print(f"search only (best of 3): python {py_search:.2f} s, library batched {lib_search:.2f} s, library one at a time "
          f"{lib_single:.2f} s -> library vs python {py_search / lib_search:.1f}x (goal >= 5x), "
          f"batched vs one at a time {lib_single / lib_search:.2f}x")
    print(f"encoder alone (audio loading included): batched {enc_batched:.2f} s, one at a time {enc_single:.2f} s -> "
          f"{enc_single / enc_batched:.2f}x, the most batching can give end to end here")
    print(f"library == python reference on {100 * agree:.1f}% of utterances (goal >= 99%)")
    print(f"CER% python : {cer_line(py_s)}")
    print(f"CER% library: {cer_line(lib_s)} (overall difference "
          f"{100 * (lib_s.overall().cer - py_s.overall().cer):+.2f} points; goal within 0.2)")
    if args.lm:
        print(f"CER% library + LM {args.lm.name} (weight {args.lm_weight:g}, word score {args.word_score:g}): "
              f"{cer_line(lm_s)}; RTF {lm_t / audio:.4f}")


if __name__ == "__main__":
    main()
