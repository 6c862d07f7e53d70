"""A random tiny Whisper (transformers + CTranslate2 conversion), built offline for tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def _whisper_layout_vocab() -> tuple[dict[str, int], list[str], list[int], list[int]]:
    """Whisper's multilingual id layout (51,865 tokens): byte-level alphabet and fillers below 50257, then
    <|endoftext|>, <|startoftranscript|>, 99 languages, tasks and <|notimestamps|>, then 1,501 timestamps.
    CTranslate2 (and so faster-whisper) treats a model as multilingual only at this size."""
    from tokenizers import pre_tokenizers
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab.update({f"x{i}": i for i in range(len(alphabet), 50256)})
    vocab[""] = 50256     # as in openai's vocabulary; CTranslate2 needs it there to see a multilingual model
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{c}|>" for c in list(LANGUAGES)[:99]],
                "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
                "<|notimestamps|>"]
    vocab.update({s: 50257 + i for i, s in enumerate(specials)})
    vocab.update({f"<|{i * 0.02:.2f}|>": 50364 + i for i in range(1501)})
    begin = [vocab["\u0120"], 50257]                     # " " and <|endoftext|>, as openai/whisper-base
    suppress = [vocab[s] for s in specials[101:106]] + [50258]   # tasks, startoflm/prev, nocaptions, sot
    return vocab, specials, begin, sorted(suppress)


def make_tiny_whisper(root: Path, gain: float | None = None, whisper_vocab: bool = False) -> Path:
    """A random tiny Whisper saved to ``root/hf`` with slow and fast (tokenizer.json) tokenizers;
    CTranslate2's converter needs a tokenizer, the zero-shot decoder needs tokenizer.json.

    With ``gain`` (about 3), weight matrices are redrawn with std gain/sqrt(fan_in): at the default
    init the decoder repeats one token whatever the audio, which would make decoding tests vacuous.
    ``whisper_vocab``: Whisper's real 51,865-token id layout (byte-level alphabet, languages, timestamps)
    instead of 110 tokens, for code that looks tokens up as faster-whisper does."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperTokenizer, WhisperTokenizerFast

    if whisper_vocab:
        vocab, specials, begin, suppress = _whisper_layout_vocab()
    else:
        vocab = {f"t{i}": i for i in range(100)}
        vocab.update({s: 100 + i for i, s in enumerate(SPECIALS)})
        specials, begin, suppress = SPECIALS, [0, 100], list(range(101, 110))
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    WhisperTokenizer(str(root / "vocab.json"), str(root / "merges.txt"),
                     additional_special_tokens=specials[2:]).save_pretrained(root / "hf")
    WhisperTokenizerFast.from_pretrained(root / "hf").save_pretrained(root / "hf")
    config = WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                           decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                           vocab_size=len(vocab), pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                           decoder_start_token_id=sot)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    # The defaults name ids of the real 51865-token vocabulary; CTranslate2 would index past the small one.
    model.generation_config.begin_suppress_tokens, model.generation_config.suppress_tokens = begin, suppress
    with torch.no_grad():  # non-trivial biases and norms, so an aliasing or bias bug cannot hide
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            elif gain is not None and p.ndim >= 2 and "embed_positions" not in name:
                p.normal_(0.0, gain / p[0].numel() ** 0.5)
    model.save_pretrained(root / "hf")
    return root / "hf"


def convert_to_ct2(src: Path, dst: Path, quantization: str | None = None) -> Path:
    """CTranslate2 model dir with tokenizer.json copied in, as fetch-pretrained lays it out."""
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(src), copy_files=["tokenizer.json"]).convert(str(dst), quantization=quantization,
                                                                          force=True)
    return dst


def make_whisper_experiment(root, pretrained, *extra, targets_text: str | None = None):
    """An experiment dir as training leaves it: Whisper encoder and decoder from ``pretrained``, moved away
    from it (so only the checkpoint's weights can produce the outputs), a key bias the decoder learned, and
    with ``targets_text`` the train_vocab=targets token list of that text."""
    import shutil

    from safetensors.torch import save_file

    from speechalign.config import load_config, save_config
    from speechalign.models.asr import build_model
    from speechalign.models.experiment import ATT_TRAIN_VOCAB, write_ids
    from speechalign.text import CharTokenizer
    from speechalign.text.tokenizer import SPECIALS
    from speechalign.text.whisper_vocab import WhisperVocab
    from tests.conftest import TONE_CHARS

    cfg = load_config(None, ["model.encoder=whisper", f"model.whisper.pretrained={pretrained}",
                             f"model.decoder.pretrained={pretrained}", "model.ctc_weight=0.5",
                             "model.decoder.dropout=0.0", *extra])
    tokenizer = CharTokenizer(list(SPECIALS) + list(TONE_CHARS))
    vocab = WhisperVocab(pretrained / "tokenizer.json", cfg.model.decoder.language)
    model = build_model(cfg, len(tokenizer), None, None, vocab)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "ctc.weight":
                p.normal_(0.0, 3.0 / p.shape[1] ** 0.5)
            elif name.startswith("decoder.") and name != "decoder.embed.weight":
                p.add_(torch.randn_like(p) * 0.05 * (p.std() if p.numel() > 1 else 1.0))
    root.mkdir(parents=True)
    save_config(cfg, root / "config.yaml")
    tokenizer.save(root / "tokens.txt")
    model.encoder.hf_config.to_json_file(str(root / "encoder_config.json"))
    shutil.copy(pretrained / "decoder.json", root / "decoder.json")
    shutil.copy(pretrained / "tokenizer.json", root / "whisper_tokenizer.json")
    if targets_text is not None:
        write_ids(root / ATT_TRAIN_VOCAB, sorted(set(vocab.encode(targets_text))) + [vocab.eos])
    (root / "checkpoints" / "step-1").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(root / "checkpoints/step-1/model.safetensors"))
    return root


def waveforms(seed: int, lengths=(16000, 37130, 9471)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        t = np.arange(n) / 16000
        f = rng.uniform(120, 900, size=3)
        x = 0.08 * rng.standard_normal(n) + sum(0.2 * np.sin(2 * np.pi * fi * t * (1 + 0.3 * t / t[-1])) for fi in f)
        out.append(x.astype(np.float32))
    return out
