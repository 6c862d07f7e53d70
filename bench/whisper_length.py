"""Whisper encoder on 3-s utterances: ``trim`` (real frames only) vs ``pad30`` (faithful 30-s padding).

Prints utterances per second of both modes, their ratio (goal >= 5x) and the cosine between the
mean-pooled top-layer outputs of both modes (how much trimming changes the embedding).
Usage: python bench/whisper_length.py [--encoder-dir DIR] [--batch 8] [--repeats 3]
(default: a random-init Whisper-base-sized encoder; pass an imported Whisper-base for real weights).
"""

from __future__ import annotations

import argparse
import time

import torch

from speechalign.config import load_config
from speechalign.models.encoders import build_encoder


def throughput(encoder, wav, lens, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        out = encoder(wav, lens)
        start = time.perf_counter()
        for _ in range(repeats):
            out = encoder(wav, lens)
        elapsed = time.perf_counter() - start
    pooled = torch.stack([h[: int(n)].mean(0) for h, n in zip(out.last, out.lengths)])
    return repeats * len(wav) / elapsed, pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder-dir", help="imported/pretrained Whisper encoder dir")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = ["model.whisper.d_model=512", "model.whisper.encoder_layers=6", "model.whisper.encoder_attention_heads=8",
            "model.whisper.encoder_ffn_dim=2048"]
    if args.encoder_dir:
        size = [f"model.whisper.pretrained={args.encoder_dir}"]
    torch.manual_seed(0)
    trim = build_encoder(load_config(None, ["model.encoder=whisper", *size])).eval()
    pad = build_encoder(load_config(None, ["model.encoder=whisper", "model.whisper.length_mode=pad30", *size])).eval()
    pad.load_state_dict(trim.state_dict())
    n = int(args.seconds * 16000)
    wav = torch.randn(args.batch, n) * 0.1
    lens = torch.full((args.batch,), n)
    trim_rate, trim_pooled = throughput(trim, wav, lens, args.repeats)
    pad_rate, pad_pooled = throughput(pad, wav, lens, max(1, args.repeats // 3))
    cosine = torch.nn.functional.cosine_similarity(trim_pooled, pad_pooled).mean().item()
    print(f"whisper encoder ({'pretrained' if args.encoder_dir else 'random init, base size'}), "
          f"{args.batch} x {args.seconds:.0f}-s utterances, {torch.get_num_threads()} threads")
    print(f"pad30: {pad_rate:8.2f} utt/s")
    print(f"trim : {trim_rate:8.2f} utt/s")
    print(f"ratio trim/pad30: {trim_rate / pad_rate:.1f}x (goal >= 5x)")
    print(f"cosine(pooled trim, pooled pad30): {cosine:.4f}")


if __name__ == "__main__":
    main()
