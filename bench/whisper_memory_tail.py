"""Pretrained Whisper's decoder on a trimmed memory, with N seconds of silence appended, and on 30-s padding.

Greedy decoding (no vocabulary restriction) of pretrained Whisper-base on real speech, the memory made by
speechalign's encoder (``model.whisper.tail_seconds``; "pad30" = silence up to 30 s, every frame kept): prints
CER per mode and one hypothesis. On the 20 goo-gi dev Mandarin sentences (2026-12-02): trim 180.1 %, +1 s 68.9 %,
+2 s 41.0 %, +3 s 41.0 %, pad30 16.1 %. The encoder appends one silence frame more whenever the count of feature
frames is odd, so the last stride-2 convolution reads silence rather than its zero padding: that took pad30 from
19.9 % to 16.1 % and left +1-3 s unchanged.
Usage: python bench/whisper_memory_tail.py --whisper-hf ~/.cache/speechalign/whisper-base/hf \\
           --cuts exp/real/data/goo-gi_cuts_dev.jsonl.gz --language Mandarin [--tails 0 1 2 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jiwer
import lhotse
import torch

from speechalign.models.encoders import WhisperSpeechEncoder, load_pretrained_whisper_encoder
from speechalign.text.normalize import normalize


def greedy(model, tokenizer, memory: torch.Tensor, max_tokens: int = 60) -> str:
    prompt = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|notimestamps|>"])
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = list(prompt)
    for _ in range(max_tokens):
        h = model.model.decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=memory).last_hidden_state
        nxt = int(model.proj_out(h[:, -1]).argmax())
        if nxt == eot:
            break
        ids.append(nxt)
    return tokenizer.decode(ids[len(prompt):], skip_special_tokens=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whisper-hf", type=Path, required=True, help="a transformers Whisper dir (export-whisper-hf)")
    parser.add_argument("--cuts", type=Path, required=True)
    parser.add_argument("--language", default="Mandarin", help="the supervisions' language to keep")
    parser.add_argument("--tails", type=float, nargs="+", default=[0, 1, 2, 3], help="seconds of silence")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from transformers import WhisperForConditionalGeneration, WhisperTokenizerFast

    torch.set_num_threads(args.threads)
    model = WhisperForConditionalGeneration.from_pretrained(args.whisper_hf).eval()
    tokenizer = WhisperTokenizerFast.from_pretrained(args.whisper_hf)
    weights = load_pretrained_whisper_encoder(str(args.whisper_hf))
    modes = {f"trim + {t:g} s": WhisperSpeechEncoder(weights, "trim", t).eval() for t in args.tails}
    cuts = [c for c in lhotse.load_manifest_lazy(args.cuts) if c.supervisions[0].language == args.language]
    if not cuts:
        raise SystemExit(f"{args.cuts}: no cut with language {args.language!r}")
    refs, hyps = [normalize(c.supervisions[0].text) for c in cuts], {m: [] for m in [*modes, "pad30"]}
    with torch.inference_mode():
        for cut in cuts:
            audio = torch.from_numpy(cut.load_audio()).float().mean(0, keepdim=True)
            to_30s = WhisperSpeechEncoder(weights, "trim", (480000 - audio.shape[1]) // 320 * 0.02).eval()
            for name, encoder in [*modes.items(), ("pad30", to_30s)]:
                out = encoder(audio, torch.tensor([audio.shape[1]]))
                hyps[name].append(normalize(greedy(model, tokenizer, out.last)) or "-")
    print(f"{len(cuts)} {args.language} utterances of {args.cuts}; reference: {refs[0]}")
    for name in hyps:
        print(f"{name:12s} CER {100 * jiwer.cer(refs, hyps[name]):6.1f} %   e.g. {hyps[name][0]}")


if __name__ == "__main__":
    main()
