"""Embedding throughput of every transformers speech family through speechalign's one adapter against a plain
``AutoModel`` loop (goal: the adapter no slower than 1.1x the loop, the same pooled vectors).

For each family a tiny random-init model (2 layers of width 32) reads the same generated utterances (1-6 s, in
batches of ``--batch``) and every layer's states are mean-pooled over each utterance's real frames, as
``speechalign embed`` pools them. The adapter: ``HFSpeechEncoder`` (waveform normalization in torch, the
extractor's fbank for w2v-BERT, a family that leaks padding read one utterance at a time). The loop: the model's
own feature extractor and ``AutoModel(..., output_hidden_states=True)``, batched where padding cannot reach the
real frames and one utterance at a time where it can, as a careful user would write it. A family read one at a
time also gets the batched loop's time and error (what exactness costs). Timings: this process's CPU time on one
thread, per batch the least of ``--repeats`` runs, the ways alternating batch by batch in a rotating order (a busy
machine slows none of them more than another). ``--model-dir DIR`` adds a real model (a directory or hub id, any
family but Whisper).
Usage: python bench/hf_embed.py [--utts 48] [--batch 8] [--repeats 9] [--model-dir DIR ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from speechalign.models.encoders import load_speech_encoder, pool
from speechalign.models.hf_encoder import FAMILIES, default_extractor, family_config, tiny_config


# the families' defaults (base layouts) and the large-model layout of wav2vec2 (XLS-R, MMS): convolutions
# normalized per frame, an attention mask, batches read at once
MODELS = {**{t: (t, {}) for t in FAMILIES if t != "whisper"},
          "wav2vec2 (layer norm)": ("wav2vec2", {"feat_extract_norm": "layer", "do_stable_layer_norm": True})}


def tiny_dir(root: Path, name: str) -> Path:
    """A random-init miniature of ``MODELS[name]`` saved with its extractor, as a hub directory holds a model."""
    from transformers import AutoModel

    model_type, values = MODELS[name]
    config = family_config(model_type, {**tiny_config(model_type), **values})
    torch.manual_seed(0)
    out = root / name.replace(" ", "_")
    AutoModel.from_config(config).save_pretrained(out)
    default_extractor(config).save_pretrained(out)
    return out


def adapter_pooled(encoder, batches) -> list[np.ndarray]:
    vectors = []
    for wav, lens in batches:
        out = encoder(wav, lens)
        vectors.append(np.stack([pool(h, out.speech_lengths, "mean").numpy() for h in out.hidden_states], 1))
    return vectors


def plain_pooled(model, extractor, batches, alone: bool) -> list[np.ndarray]:
    """The plain loop: extractor, AutoModel, pooled over the frames the model's own length function counts."""
    vectors = []
    for wav, lens in batches:
        utts = [w[:n].numpy() for w, n in zip(wav, lens.tolist())]
        groups = [[u] for u in utts] if alone else [utts]
        rows = []
        for group in groups:
            inputs = extractor(group, sampling_rate=16000, padding=True, return_attention_mask=True,
                               return_tensors="pt")
            mask = inputs.pop("attention_mask")
            states = model(**inputs, attention_mask=mask if extractor.return_attention_mask or
                           "input_features" in inputs else None, output_hidden_states=True).hidden_states
            if "input_features" in inputs:
                frames = model._get_feat_extract_output_lengths(mask.sum(-1))
            else:
                frames = model._get_feat_extract_output_lengths(torch.tensor([len(u) for u in group]))
            rows.append(np.stack([pool(h, frames, "mean").numpy() for h in states], 1))
        vectors.append(np.concatenate(rows))
    return vectors


def best_times(fns: dict, batches: list, repeats: int) -> tuple[dict, dict]:
    """Each function's time over all batches: per batch the least CPU time of ``repeats`` runs, the functions
    alternating batch by batch, so a moment of contention on a busy machine counts against none of them; and each
    function's output. Whichever runs first on a batch pays for its new shapes (memory, caches): the order rotates."""
    best = {name: [float("inf")] * len(batches) for name in fns}
    out = {name: [None] * len(batches) for name in fns}
    names = list(fns)
    for r in range(repeats):
        for b, batch in enumerate(batches):
            for name in names[r % len(names):] + names[: r % len(names)]:
                fn = fns[name]
                start = time.process_time()
                out[name][b] = fn([batch])[0]
                best[name][b] = min(best[name][b], time.process_time() - start)
    return {name: sum(t) for name, t in best.items()}, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--model-dir", nargs="*", default=[],
                        help="real models to add (directories or hub ids; not Whisper, which AutoModel pairs with a decoder)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoFeatureExtractor, AutoModel

    rng = np.random.default_rng(0)
    utts = [(rng.standard_normal(int(rng.uniform(1, 6) * 16000)) * 0.1).astype(np.float32) for _ in range(args.utts)]
    batches = []
    for i in range(0, len(utts), args.batch):
        group = utts[i : i + args.batch]
        wav = torch.zeros(len(group), max(map(len, group)))
        for k, u in enumerate(group):
            wav[k, : len(u)] = torch.from_numpy(u)
        batches.append((wav, torch.tensor([len(u) for u in group])))
    seconds = sum(map(len, utts)) / 16000
    print(f"{args.utts} utterances, {seconds:.0f} s of audio, batches of {args.batch}; per batch the least CPU time of {args.repeats} runs, 1 thread")
    print(f"{'model':24s} {'read':7s} {'adapter utt/s':>13s} {'plain utt/s':>12s} {'adapter/plain time':>18s} "
          f"{'max diff':>9s}   batched plain (inexact): utt/s, max diff")
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [(name, str(tiny_dir(Path(tmp), name))) for name in MODELS]
        for path in args.model_dir:
            dirs.append((Path(path).name, path))
        worst = 0.0
        for name, path in dirs:
            encoder = load_speech_encoder(path).eval()
            model, extractor = AutoModel.from_pretrained(path).eval(), AutoFeatureExtractor.from_pretrained(path)
            fns = {"adapter": lambda b: adapter_pooled(encoder, b),
                   "plain": lambda b: plain_pooled(model, extractor, b, encoder.alone)}
            if encoder.alone:
                fns["batched"] = lambda b: plain_pooled(model, extractor, b, False)
            with torch.no_grad():
                for fn in fns.values():   # warm-up
                    fn(batches[:1])
                times, out = best_times(fns, batches, args.repeats)
            t_fast, t_slow = times["adapter"], times["plain"]
            diff = max(float(np.abs(a - b).max()) for a, b in zip(out["adapter"], out["plain"]))
            extra = ""
            if encoder.alone:
                leak = max(float(np.abs(a - b).max()) for a, b in zip(out["adapter"], out["batched"]))
                extra = f"   {args.utts / times['batched']:8.1f}, {leak:.2e}"
            ratio = t_fast / t_slow
            worst = max(worst, ratio)
            print(f"{name:24s} {'alone' if encoder.alone else 'batch':7s} {args.utts / t_fast:13.1f} "
                  f"{args.utts / t_slow:12.1f} {ratio:17.2f}x {diff:9.1e}{extra}")
    print(f"slowest adapter/plain time ratio: {worst:.2f}x (goal <= 1.10x)")


if __name__ == "__main__":
    main()
