"""Why joint_beam trails attention_rescoring: a dev-set table of CTC weight x candidate proposal, next to
attention_rescoring, ctc_prefix_beam and the decoder's teacher-forced token accuracy.

``ctc_propose 1.0`` is the former search (candidates = the decoder's pre-beam only); ``0.05`` adds every
token CTC gives > 5 % in some frame. The encoder runs once; every row re-decodes the cached encodings.
Usage: python bench/joint_beam.py --exp-dir exp/synth/conformer_ctc --cuts exp/synth/data/synth_cuts_dev.jsonl.gz
"""

from __future__ import annotations

import argparse
import time

import torch

from speechalign.data.dataset import eval_loader
from speechalign.data.manifest import load_cuts
from speechalign.decode.attention import joint_beam
from speechalign.decode.cer import CerScorer
from speechalign.decode.batch import decode_encoded, make_ctc_search
from speechalign.models.experiment import load_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True)
    parser.add_argument("--cuts", required=True)
    parser.add_argument("--checkpoint", default="latest")
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--max-utts", type=int, default=100)
    parser.add_argument("--ctc-weights", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    args = parser.parse_args()
    _, tokenizer, model = load_experiment(args.exp_dir, args.checkpoint)
    cuts = load_cuts(args.cuts).subset(first=args.max_utts)
    batches, hits, total = [], 0, 0
    with torch.inference_mode():
        for batch in eval_loader(cuts, 120.0):
            enc = model.encode(batch.wav, batch.wav_lens)
            batches.append((batch, enc, model.ctc_log_probs(enc)))
            targets = [tokenizer.encode(t) for t in batch.texts]
            n = sum(len(t) + 1 for t in targets)
            hits += float(model.loss(enc, targets, batch.texts)["att_acc"]) * n
            total += n

        def cer(decode_one) -> tuple[float, float]:
            scorer, start = CerScorer(), time.perf_counter()
            for batch, enc, lp in batches:
                for i, (d, r) in enumerate(zip(batch.dialects, batch.texts)):
                    scorer.add(r, tokenizer.decode(decode_one(batch, enc, lp, i)), d)
            return 100 * scorer.overall().cer, time.perf_counter() - start

        print(f"{len(cuts)} dev utterances, beam {args.beam}; decoder teacher-forced token accuracy "
              f"{100 * hits / total:.1f}% (incl. <eos>)")
        print("| decoder | ctc_weight | ctc_propose | CER% | seconds |\n|---|---|---|---|---|")
        for mode in ("ctc_prefix_beam", "attention_rescoring"):
            search = make_ctc_search(tokenizer, mode, args.beam, None)
            outs = {}
            for batch, enc, lp in batches:
                outs[id(batch)] = decode_encoded(model, enc, lp, mode, args.beam, 0.5, tokenizer.decode, search)
            c, s = cer(lambda b, e, lp, i: outs[id(b)][i])
            print(f"| {mode} | {'0.5' if mode != 'ctc_prefix_beam' else '-'} | - | {c:.2f} | {s:.1f} |")
        for w in args.ctc_weights:
            for propose in (1.0, 0.05):
                c, s = cer(lambda b, e, lp, i: joint_beam(model, lp[i, : e.lengths[i]], e.last[i, : e.lengths[i]],
                                                          args.beam, w, ctc_propose=propose))
                print(f"| joint_beam | {w:g} | {propose:g} | {c:.2f} | {s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
