"""A decoder trained with a restricted softmax, in beam search: the output layer over its allowed rows only
(the fast path) against the full 51,865-row projection masked to them (the plain baseline).

Prints milliseconds per beam step of both, their ratio and the max difference of the allowed logits (must
be ~0). Default: a random-init Whisper-base-sized decoder (6 layers, d 512, 51,865 tokens) with 1,032 allowed
tokens, as the goo-gi recipe trains; 5 hypotheses of 20 tokens over 200 memory frames (4 s of speech).
Usage: python bench/restricted_output.py [--allowed 1032] [--beam 5] [--tokens 20] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from speechalign.models.decoder import AttentionDecoder


def step_ms(dec: AttentionDecoder, tokens, kv, pad, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        out = dec.next_token_logits(tokens, kv, pad)
        start = time.perf_counter()
        for _ in range(repeats):
            out = dec.next_token_logits(tokens, kv, pad)
    return 1000 * (time.perf_counter() - start) / repeats, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=51865)
    ap.add_argument("--allowed", type=int, default=1032)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    dec = AttentionDecoder(args.vocab, 512, 6, 8, 2048, dropout=0.0, max_len=448, activation="gelu",
                           learned_positions=True, scale_embedding=False, tie_output=True).eval()
    memory = torch.randn(1, args.frames, 512)
    with torch.inference_mode():
        kv = [(k.expand(args.beam, -1, -1, -1), v.expand(args.beam, -1, -1, -1)) for k, v in dec.memory_kv(memory)]
    pad = torch.zeros(args.beam, args.frames, dtype=torch.bool)
    tokens = torch.randint(0, args.vocab, (args.beam, args.tokens))
    allowed = torch.zeros(args.vocab, dtype=torch.bool)
    allowed[torch.randperm(args.vocab)[: args.allowed]] = True
    full_ms = fast_ms = 0.0
    for _ in range(3):   # interleaved, so a busy machine slows both alike
        dec.allowed = None
        ms, full = step_ms(dec, tokens, kv, pad, args.repeats)
        full_ms += ms
        dec.allowed = allowed
        ms, fast = step_ms(dec, tokens, kv, pad, args.repeats)
        fast_ms += ms
    diff = float((fast[:, allowed] - full[:, allowed]).abs().max())
    print(f"threads {torch.get_num_threads()}, {args.beam} hypotheses x {args.tokens} tokens, "
          f"{args.allowed} of {args.vocab} tokens allowed")
    print(f"full projection, masked: {full_ms / 3:.2f} ms per step")
    print(f"allowed rows only:       {fast_ms / 3:.2f} ms per step")
    print(f"ratio {full_ms / fast_ms:.2f}x; max |allowed logit difference| {diff:.2e}; "
          f"outside allowed all -inf: {bool(torch.isneginf(fast[:, ~allowed]).all())}")


if __name__ == "__main__":
    main()
