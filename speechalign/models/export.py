"""``speechalign export``: an experiment as a transformers directory (``hf``) or an ONNX CTC model (``onnx``).

``hf``: the encoder in transformers' own layout (``config.json`` + ``model.safetensors``, loaded with
``WhisperEncoder`` / ``AutoModel.from_pretrained``; the conformer, which transformers lacks, as
``encoder.safetensors`` for :func:`load_hf_export`), the CTC head (``ctc.safetensors``), the tokenizer
(``tokens.txt``, and ``vocab.json`` + ``tokenizer_config.json`` for ``Wav2Vec2CTCTokenizer``), the feature
extractor's ``preprocessor_config.json`` and a model card (``README.md``) whose code is tested.

A Whisper encoder with Whisper's pretrained decoder (``model.decoder.pretrained``) is written whole instead:
a ``WhisperForConditionalGeneration`` with its ``generation_config.json`` and ``WhisperProcessor`` (what
``pipeline("automatic-speech-recognition")`` and CTranslate2's ``ct2-transformers-converter`` read), the CTC
head and ``tokens.txt`` beside it, the CTC tokenizer's files in ``ctc_tokenizer/`` (Whisper's tokenizer owns
``vocab.json`` and ``tokenizer_config.json`` there).

``onnx``: ``model.onnx`` mapping waveforms (B, N) and their lengths (B,) to CTC log-probabilities (B, T, V)
and valid frame counts (B,), batch and time dynamic; the feature front end is inside the graph.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from speechalign.models.encoders import EncoderOutput

log = logging.getLogger("speechalign.export")
FORMATS = ("hf", "onnx")
META = "speechalign.json"
SAMPLE_RATE = 16000
MAX_ONNX_INLINE_BYTES = 1_800_000_000   # protobuf's 2 GB limit: larger weights go to model.onnx.data
HF_ENCODERS = ("wav2vec2", "hf")   # encoders that are a transformers model with its feature extractor


@contextmanager
def atomic_dir(out: Path):
    """Yield a temporary sibling of ``out``; on success it replaces ``out`` (a failed export leaves
    any previous ``out`` untouched and no partial directory)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)   # mkdtemp's 0700 would make the published directory private
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.with_name(f"{tmp.name}.old")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def export(exp_dir: str | Path, out: str | Path, fmt: str, checkpoint: str = "latest",
           results: list[str | Path] = ()) -> Path:
    """Write the experiment's encoder and CTC head at ``checkpoint`` to ``out`` in format ``fmt`` (with ``hf``,
    a Whisper decoder too: the whole model, see the module docstring)."""
    from speechalign.models.experiment import load_experiment

    if fmt not in FORMATS:
        raise ValueError(f"export: unknown --format {fmt!r}; choose from {FORMATS}")
    for r in results:
        if not Path(r).is_file():
            raise FileNotFoundError(f"export --results: {r} not found")
    exp_dir, out = Path(exp_dir), Path(out)
    cfg, tokenizer, model = load_experiment(exp_dir, checkpoint)
    meta = _meta(cfg, model, exp_dir, checkpoint)
    whole = fmt == "hf" and exports_whisper_decoder(cfg, model)
    if model.decoder is not None and not whole:
        log.info("export: the attention decoder is not exported (only a Whisper decoder on a Whisper encoder "
                 "makes a transformers model; --format %s carries the encoder and CTC head)", fmt)
    with atomic_dir(out) as tmp:
        if whole:
            meta["whisper_decoder"] = _write_whisper(tmp, cfg, model, exp_dir)
            meta["ctc"]["tokenizer"] = "ctc_tokenizer"
        elif fmt == "hf":
            _write_hf(tmp, cfg, model)
        else:
            meta["onnx"] = _write_onnx(tmp / "model.onnx", model)
        _write_tokenizer(tmp, tokenizer.tokens, tmp / "ctc_tokenizer" if whole else tmp)
        (tmp / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        shutil.copyfile(exp_dir / "config.yaml", tmp / "speechalign_config.yaml")
        from speechalign.models.model_card import model_card

        (tmp / "README.md").write_text(model_card(fmt, meta, cfg, exp_dir, checkpoint, results, str(out)), encoding="utf-8")
    log.info("exported %s (%s, checkpoint %s) to %s", exp_dir, fmt, checkpoint, out)
    return out


def _meta(cfg, model, exp_dir: Path, checkpoint: str) -> dict:
    enc = model.encoder
    meta = {"encoder": cfg.model.encoder, "num_layers": enc.num_layers, "dim": enc.dim,
            "frame_shift": enc.frame_shift, "sample_rate": SAMPLE_RATE,
            "min_samples": int(getattr(enc, "min_samples", 1)),
            "ctc": {"file": "ctc.safetensors", "vocab_size": model.vocab_size, "blank_id": 0,
                    "input": "the last hidden state (after the encoder's final norm)"},
            "source": {"exp_dir": str(exp_dir), "checkpoint": checkpoint}}
    if cfg.model.encoder == "whisper":
        meta["length_mode"] = cfg.model.whisper.length_mode
        meta["tail_seconds"] = cfg.model.whisper.tail_seconds
        meta["max_samples"] = enc.max_samples
    if cfg.model.encoder == "conformer":
        meta["conformer"] = asdict(cfg.model.conformer)
    if cfg.model.encoder in HF_ENCODERS:
        meta["model_type"] = enc.model.config.model_type
    return meta


def _write_hf(out: Path, cfg, model) -> None:
    from transformers import WhisperFeatureExtractor

    enc = model.encoder
    if cfg.model.encoder == "whisper":
        enc.encoder.save_pretrained(out, safe_serialization=True)
        WhisperFeatureExtractor(feature_size=enc.hf_config.num_mel_bins).save_pretrained(out)
    elif cfg.model.encoder in HF_ENCODERS:
        enc.model.save_pretrained(out, safe_serialization=True)
        enc.extractor.save_pretrained(out)   # the input the model was trained on (a random-init wav2vec2: raw waveform)
    else:
        save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(out / "encoder.safetensors"))
    save_file({k: v.contiguous() for k, v in model.ctc.state_dict().items()}, str(out / "ctc.safetensors"))


def exports_whisper_decoder(cfg, model) -> bool:
    """True when ``--format hf`` writes a whole ``WhisperForConditionalGeneration``: Whisper's decoder
    (pretrained, BPE) on a Whisper encoder. Other decoders have no transformers model to go into."""
    return (cfg.model.encoder == "whisper" and bool(cfg.model.decoder.pretrained) and model.decoder is not None
            and model.att_vocab is not None)


def _pretrained_alignment_heads(pretrained: str) -> list | None:
    """The cross-attention heads that follow the audio (word timestamps), from the pretrained model the
    decoder started from, if it is still on this machine; fine-tuning keeps the architecture they index."""
    from speechalign.models.whisper_hf import _ct2_config

    src = Path(os.path.expanduser(pretrained))
    hf_gen = src / "hf" / "generation_config.json"
    if hf_gen.is_file():
        return json.loads(hf_gen.read_text(encoding="utf-8")).get("alignment_heads")
    try:
        return _ct2_config(src, None)[0].get("alignment_heads")
    except (FileNotFoundError, KeyError, ValueError):
        return None


def _write_whisper(out: Path, cfg, model, exp_dir: Path) -> dict:
    """The whole fine-tuned Whisper as ``WhisperForConditionalGeneration`` + processor + generation config,
    and the CTC head; returns what speechalign.json records about it."""
    from transformers import WhisperFeatureExtractor

    from speechalign.models.whisper_hf import (_token_ids, check_whisper_decoder, finetuned_generation_config,
                                               whisper_hf_model, whisper_processor)

    enc, dec, d = model.encoder, model.decoder, cfg.model.decoder
    dec_config = json.loads((exp_dir / "decoder.json").read_text(encoding="utf-8"))
    check_whisper_decoder(dec_config, enc.dim, str(exp_dir / "decoder.json"))
    tokenizer_json = model.att_vocab.path
    vocab, _ = _token_ids(tokenizer_json)
    # A train_vocab=targets model holds the full embedding (the tied output layer); only the rows it was
    # trained on may be output, as speechalign decodes it.
    allowed = None if dec.allowed is None else dec.allowed.nonzero().squeeze(-1).tolist()
    heads = _pretrained_alignment_heads(d.pretrained)
    gen = finetuned_generation_config(vocab, dec.embed.num_embeddings, dec.max_len, d.language, allowed, heads)
    hf = whisper_hf_model(enc.hf_config.to_dict(), enc.encoder.state_dict(), dec_config, dec.state_dict(), gen,
                          str(exp_dir))
    hf.save_pretrained(out, safe_serialization=True)
    processor = whisper_processor(tokenizer_json, vocab, gen["eos_token_id"],
                                  WhisperFeatureExtractor(feature_size=enc.hf_config.num_mel_bins), d.language)
    processor.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in model.ctc.state_dict().items()}, str(out / "ctc.safetensors"))
    return {"architecture": "WhisperForConditionalGeneration", "language": d.language,
            "prompt": list(model.att_prefix), "decoder_layers": dec_config["num_layers"],
            "decoder_heads": dec_config["num_heads"], "vocab_size": dec_config["vocab_size"],
            "train_vocab": d.train_vocab, "allowed_tokens": None if allowed is None else len(allowed),
            "variety_prompt": d.prompt == "variety", "targets": d.targets,
            "alignment_heads": bool(heads)}


def _write_tokenizer(out: Path, tokens: list[str], ctc_dir: Path) -> None:
    from transformers import Wav2Vec2CTCTokenizer

    (out / "tokens.txt").write_text("".join(f"{t} {i}\n" for i, t in enumerate(tokens)), encoding="utf-8")
    ctc_dir.mkdir(exist_ok=True)
    (ctc_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False,
                                                   indent=0), encoding="utf-8")
    # The CTC tokenizer transformers has: decode() merges repeats and drops <blank> (its pad token).
    Wav2Vec2CTCTokenizer(str(ctc_dir / "vocab.json"), unk_token="<unk>", pad_token="<blank>", bos_token="<sos/eos>",
                         eos_token="<sos/eos>", word_delimiter_token=None).save_pretrained(ctc_dir)


class CTCGraph(nn.Module):
    """What the ONNX graph computes: waveforms and lengths -> CTC log-probabilities and valid frames."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc: EncoderOutput = self.model.encode(wav, wav_lens)
        return self.model.ctc_log_probs(enc), enc.lengths


@contextmanager
def _quiet_exporter():
    """Silence what the exporter reports that no user can act on (missing torchvision ops, a graph dump
    for the data-dependent output length, deprecation notices of its own internals); errors still raise."""
    import warnings

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _write_onnx(path: Path, model) -> dict:
    """torch.export-based ONNX export (torch's default exporter); the TorchScript one cannot export
    the complex STFT of the front ends. Returns the graph's interface for speechalign.json."""
    enc = model.encoder
    if getattr(enc, "fbank", False) or getattr(enc, "alone", False):
        kind = enc.model.config.model_type
        raise ValueError(f"export --format onnx: a {kind} encoder has no batch graph that is exact ("
                         + ("its log-mel features are computed by its numpy feature extractor" if enc.fbank else
                            "it reads each utterance alone: its convolutions normalize over time or its layers "
                            "read padding") + "); use --format hf")
    # 0.1 s at least keeps the example batch valid for every front end; shorter audio is zero-padded
    # by the caller with its length unchanged, which changes no output (padding is masked).
    min_samples = max(int(getattr(enc, "min_samples", 1)), 1600)
    max_samples = getattr(enc, "max_samples", None)
    # Two lengths in the example batch, so the traced graph masks padding as real batches need.
    wav = torch.randn(2, 2 * min_samples, generator=torch.Generator().manual_seed(0)) * 0.1
    lens = torch.tensor([wav.shape[1], wav.shape[1] * 3 // 4])
    batch = torch.export.Dim("batch", min=1)
    samples = torch.export.Dim("samples", min=min_samples, max=max_samples)
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > MAX_ONNX_INLINE_BYTES
    with torch.no_grad(), _quiet_exporter():
        torch.onnx.export(CTCGraph(model).eval(), (wav, lens), str(path), dynamo=True, external_data=big,
                          input_names=["wav", "wav_lens"], output_names=["log_probs", "lengths"],
                          dynamic_shapes=({0: batch, 1: samples}, {0: batch}), verbose=False)
    return {"file": path.name, "inputs": {"wav": "float32 (batch, samples), 16 kHz, zero-padded",
                                          "wav_lens": "int64 (batch,), samples per utterance"},
            "outputs": {"log_probs": "float32 (batch, frames, vocab), CTC log-probabilities",
                        "lengths": "int64 (batch,), valid frames per utterance"},
            "min_samples": min_samples, "max_samples": max_samples,
            "pad_to_min_samples": "pad shorter batches with zeros up to min_samples, keeping wav_lens"}


def load_hf_export(path: str | Path) -> tuple[nn.Module, nn.Linear, list[str]]:
    """The speechalign encoder (every layer's states and lengths, as in training), the CTC head and the
    tokens of an ``hf`` export — the way to use an exported conformer, which transformers lacks."""
    from speechalign.models.encoders import ConformerSpeechEncoder, WhisperSpeechEncoder

    path = Path(path)
    meta_file = path / META
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path}: no {META} (not a `speechalign export --format hf` directory)")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    kind = meta.get("encoder")
    if kind == "whisper":
        from speechalign.models.encoders import load_pretrained_whisper_encoder

        encoder = WhisperSpeechEncoder(load_pretrained_whisper_encoder(str(path)), meta["length_mode"],
                                       meta.get("tail_seconds", 0.0))
    elif kind in HF_ENCODERS:
        from speechalign.models.encoders import load_speech_encoder

        encoder = load_speech_encoder(str(path))
    elif kind == "conformer":
        from speechalign.config import ConformerEncoderConfig

        encoder = ConformerSpeechEncoder(ConformerEncoderConfig(**meta["conformer"]))
        encoder.load_state_dict(load_file(str(path / "encoder.safetensors")), strict=True)
    else:
        raise ValueError(f"{meta_file}: field 'encoder' is {kind!r}; expected whisper, wav2vec2, hf or conformer")
    ctc_weights = load_file(str(path / meta["ctc"]["file"]))
    ctc = nn.Linear(ctc_weights["weight"].shape[1], ctc_weights["weight"].shape[0])
    ctc.load_state_dict(ctc_weights, strict=True)
    tokens = [line.rsplit(" ", 1)[0] for line in (path / "tokens.txt").read_text(encoding="utf-8").splitlines()]
    return encoder.eval(), ctc.eval(), tokens
