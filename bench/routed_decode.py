"""What routing costs at decode time: attention_beam with a ``train-router`` file against the same decode without
it, on the same cuts in one process.

A routed utterance is encoded twice (by the main checkpoint, whose pooled states the router reads, then by its
route's checkpoint) and decoded by its route's decoder. Prints the RTF of each (wall time / audio, encoder
included), their ratio, the share of utterances routed, and what must stay equal: every utterance the router keeps
on the main checkpoint gets the plain decode's transcript.
Usage: python bench/routed_decode.py --exp-dir exp/goo-gi-default/whisper_base_hybrid_packed_enc \\
           --checkpoint avg-last3 --router exp/goo-gi-default/whisper_base_hybrid_packed_enc/router-avg-last3.safetensors \\
           --cuts exp/goo-gi-default/data/goo-gi_cuts_test.jsonl.gz [--beam 5] [--max-utts 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from speechalign.data.dataset import eval_loader
from speechalign.data.manifest import load_cuts
from speechalign.decode.router import MAIN
from speechalign.decode.batch import decode_batch
from speechalign.decode.engines import Routing
from speechalign.models.experiment import load_experiment


def run(model, cuts, beam: int, routing: Routing | None) -> tuple[float, float, dict[str, list[int]]]:
    audio, hyps, start = 0.0, {}, time.perf_counter()
    for batch in eval_loader(cuts, 120.0, min_samples=model.encoder.min_samples):
        if routing:
            out = routing.decode(model, batch.wav, batch.wav_lens, beam, batch.ids, batch.dialects)
        else:
            out = decode_batch(model, batch.wav, batch.wav_lens, "attention_beam", beam, 0.0, dialects=batch.dialects)
        audio += float(batch.wav_lens.sum()) / 16000
        hyps.update(zip(batch.ids, out))
    return time.perf_counter() - start, audio, hyps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", type=Path, required=True)
    parser.add_argument("--checkpoint", default="avg-last3")
    parser.add_argument("--router", type=Path, required=True)
    parser.add_argument("--cuts", required=True)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--max-utts", type=int, default=300)
    args = parser.parse_args()
    _, _, model = load_experiment(args.exp_dir, args.checkpoint)
    routing = Routing.open(args.router, args.exp_dir, args.checkpoint, "attention_beam", "cpu")
    cuts = load_cuts(args.cuts).subset(first=args.max_utts)
    with torch.inference_mode():
        plain_t, audio, plain = run(model, cuts, args.beam, None)
        routed_t, _, routed = run(model, cuts, args.beam, routing)
    routes = {i: r for i, _, r in routing.rows}
    kept = [i for i, r in routes.items() if r == MAIN]
    same = sum(plain[i] == routed[i] for i in kept)
    print(f"{len(plain)} utterances, {audio / 60:.1f} min of audio, beam {args.beam}, {torch.get_num_threads()} threads")
    print(f"attention_beam         : RTF {plain_t / audio:.4f}")
    print(f"attention_beam, routed : RTF {routed_t / audio:.4f} ({routed_t / plain_t:.2f}x the plain decode's time); "
          f"{len(routes) - len(kept)} of {len(routes)} utterances routed away")
    print(f"kept on the main checkpoint and identical to the plain decode: {same} of {len(kept)} (must be all)")


if __name__ == "__main__":
    main()
