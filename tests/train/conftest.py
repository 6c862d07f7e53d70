"""Fixtures of the training tests: a Whisper-like pretrained decoder dir and a YuBao-shaped corpus."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from speechalign.models.decoder import AttentionDecoder

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|notimestamps|>",
            "<|startofprev|>", "<|translate|>"]   # <|translate|>: a multilingual layout, as export expects
ARCH = dict(d_model=32, num_layers=1, num_heads=2, ffn_dim=64, max_len=64, activation="gelu",
            learned_positions=True, scale_embedding=False, tie_output=True)


def make_whisper_like_dir(root, d_model: int = 32, timestamps: bool = False):
    """What fetch-pretrained leaves: decoder.json, decoder.safetensors and a byte-level BPE tokenizer.json
    (with ``timestamps``, Whisper's 1,501 timestamp tokens after the special ones)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS + ([f"<|{i * 0.02:.2f}|>" for i in range(1501)] if timestamps else []))
    tok.save(str(root / "tokenizer.json"))
    arch = {"vocab_size": tok.get_vocab_size(), **ARCH, "d_model": d_model}
    torch.manual_seed(1)
    save_file(AttentionDecoder(**arch, dropout=0.0).state_dict(), str(root / "decoder.safetensors"))
    (root / "decoder.json").write_text(json.dumps(arch))
    return root


@pytest.fixture(scope="module")
def whisper_pair(tmp_path_factory):
    """A tiny random Whisper encoder (d_model 64, 2 layers) and a pretrained-decoder dir of that width."""
    from tests.tiny_whisper import make_tiny_whisper

    root = tmp_path_factory.mktemp("pair")
    return make_tiny_whisper(root), make_whisper_like_dir(root, d_model=64)


@pytest.fixture(scope="module")
def whisper_like_dir(tmp_path_factory):
    return make_whisper_like_dir(tmp_path_factory.mktemp("whisper_like"))


def whisper_cfg(corpus, pair, *extra, steps=4):
    """A hybrid on the tiny imported Whisper pair: encoder layer 0 and the front end frozen, no validation."""
    from speechalign.config import load_config

    encoder, decoder = pair
    return load_config(None, [
        f"data.train=[{{cuts: [{corpus['train']}]}}]", f"data.dev=[{corpus['dev']}]", "data.max_duration=8",
        "data.num_buckets=2", "data.num_workers=0", "model.encoder=whisper", f"model.whisper.pretrained={encoder}",
        f"model.decoder.pretrained={decoder}", "model.decoder.dropout=0.0", "model.ctc_weight=0.5",
        "model.freeze.frontend=true", "model.freeze.first_layers=1", "model.freeze.decoder_embedding=true",
        "optim.lr=2e-3", "optim.warmup_steps=2", "optim.schedule=noam", f"train.max_steps={steps}",
        "train.valid_every=100", "train.save_every=2", "train.keep_last=0", "train.valid_each_epoch=false",
        *extra])


def straight_and_resumed(corpus, pair, tmp_path, *extra):
    """The run dirs and step-4 weights of an uninterrupted run and of a 2-step run resumed to 4 (noam: no
    max_steps dependence)."""
    from speechalign.train.trainer import train

    straight, exp = tmp_path / "straight", tmp_path / "exp"
    train(whisper_cfg(corpus, pair, *extra), straight)
    train(whisper_cfg(corpus, pair, *extra, steps=2), exp)
    train(whisper_cfg(corpus, pair, *extra), exp, resume=True)
    return (straight, exp), tuple(load_file(str(d / "checkpoints" / "step-4" / "model.safetensors"))
                                  for d in (straight, exp))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


TRANSLATED = "子丑寅卯辰巳"


@pytest.fixture(scope="module")
def parallel_corpus(tmp_path_factory):
    """Two 'sites' in two subgroups reading the same tone sentences (YuBao-shaped dev set). Each has a
    'Mandarin translation' (the sentence in other characters), but site B's odd sentences do not."""
    from data_prep.custom import prepare_custom

    root = tmp_path_factory.mktemp("parallel")
    rng = np.random.default_rng(0)
    t = np.arange(4000) / 16000
    chars = "甲乙丙丁戊己"
    for split, n in (("train", 24), ("dev", 6)):
        rows = ["audio\ttext\tdialect\tsentence_id\tsite\tsubgroup\ttranslation"]
        for i in range(n):
            idx = rng.integers(0, len(chars), rng.integers(2, 4))
            for site, shift in (("A", 0), ("B", 15)):
                x = np.concatenate([0.3 * np.sin(2 * np.pi * (200 + shift + 80 * j) * t) for j in idx])
                sf.write(root / f"{split}{i}{site}.wav", x.astype(np.float32), 16000)
                text = "".join(chars[j] for j in idx)
                translation = "" if site == "B" and i % 2 else "".join(TRANSLATED[j] for j in idx)
                rows.append(f"{split}{i}{site}.wav\t{text}\t{site}\t{i}\t{site}\t{'g' + site}\t{translation}")
        (root / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    prepare_custom(root, root / "m", corpus="par")
    return {s: root / "m" / f"par_cuts_{s}.jsonl.gz" for s in ("train", "dev")}


