"""Import a CTranslate2 Whisper model (faster-whisper format): the encoder into transformers, the
decoder into our :class:`AttentionDecoder` (same pre-norm layers), so a fine-tune can keep both.

CTranslate2's ``model.bin`` (binary version 6): uint32 version, string spec name, uint32 revision,
uint32 variable count, then per variable: string name, uint8 rank, uint32 dims, uint8 dtype id,
uint32 byte count, raw bytes; then uint32 alias count and (alias, target) string pairs. Strings are
uint16 length (including a trailing NUL) + UTF-8 bytes. All little-endian.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import torch

SUPPORTED_VERSION = 6
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


class Ct2FormatError(ValueError):
    """model.bin is not a CTranslate2 v6 Whisper model this importer understands."""


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Ct2FormatError(f"{self.path}: truncated at byte {self.pos} (wanted {n} more bytes)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.unpack("H"))[:-1].decode("utf-8")


def read_ct2_model(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """Spec name and all variables (aliases resolved) of a CTranslate2 ``model.bin``."""
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    version = r.unpack("I")
    if version != SUPPORTED_VERSION:
        raise Ct2FormatError(f"{path}: binary version {version}, only version {SUPPORTED_VERSION} is supported")
    spec = r.string()
    r.unpack("I")  # spec revision: not needed to read the variables
    variables = {}
    for _ in range(r.unpack("I")):
        name = r.string()
        shape = [r.unpack("I") for _ in range(r.unpack("B"))]
        type_id, num_bytes = r.unpack("B"), r.unpack("I")
        if type_id not in DTYPES:
            raise Ct2FormatError(f"{path}: variable {name} has unknown dtype id {type_id}")
        raw = r.take(num_bytes)
        if DTYPES[type_id] == "bfloat16":
            array = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, dtype=DTYPES[type_id])
        variables[name] = array.reshape(shape)
    for _ in range(r.unpack("I")):
        alias, target = r.string(), r.string()
        variables[alias] = variables[target]
    return spec, variables


def _float(variables: dict, name: str) -> torch.Tensor:
    """A float32 tensor, dequantizing int8/int16 weights with their per-row ``*_scale``."""
    try:
        value = variables[name]
    except KeyError:
        raise Ct2FormatError(f"model.bin lacks variable {name}") from None
    if value.dtype in (np.int8, np.int16):
        scale = variables[name + "_scale"].astype(np.float32)
        value = value.astype(np.float32) / scale.reshape(-1, *([1] * (value.ndim - 1)))
    return torch.from_numpy(np.array(value, dtype=np.float32))


def ct2_whisper_encoder_state(variables: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    """transformers ``WhisperConfig`` kwargs and ``WhisperEncoder`` state dict from CT2 variables."""
    conv1 = _float(variables, "encoder/conv1/weight")
    d_model, n_mels = conv1.shape[0], conv1.shape[1]
    layers = sorted({int(k.split("/")[1][6:]) for k in variables if re.match(r"encoder/layer_\d+/", k)})
    ffn = _float(variables, "encoder/layer_0/ffn/linear_0/weight").shape[0]
    positions = _float(variables, "encoder/position_encodings/encodings")
    heads = int(np.asarray(variables["encoder/num_heads"]).item()) if "encoder/num_heads" in variables else None
    if heads is None:
        raise Ct2FormatError("model.bin lacks encoder/num_heads")
    state = {"conv1.weight": conv1, "conv1.bias": _float(variables, "encoder/conv1/bias"),
             "conv2.weight": _float(variables, "encoder/conv2/weight"),
             "conv2.bias": _float(variables, "encoder/conv2/bias"),
             "embed_positions.weight": positions,
             "layer_norm.weight": _float(variables, "encoder/layer_norm/gamma"),
             "layer_norm.bias": _float(variables, "encoder/layer_norm/beta")}
    for i in layers:
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        qkv_w = _float(variables, f"{src}/self_attention/linear_0/weight")
        qkv_b = _float(variables, f"{src}/self_attention/linear_0/bias")
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"{dst}.self_attn.{proj}.weight"] = qkv_w[j * d_model : (j + 1) * d_model].clone()
            if proj != "k_proj":  # Whisper's key projection has no bias (CT2 stores zeros there)
                state[f"{dst}.self_attn.{proj}.bias"] = qkv_b[j * d_model : (j + 1) * d_model].clone()
        pairs = {"self_attention/linear_1": "self_attn.out_proj", "self_attention/layer_norm": "self_attn_layer_norm",
                 "ffn/layer_norm": "final_layer_norm", "ffn/linear_0": "fc1", "ffn/linear_1": "fc2"}
        for s, d in pairs.items():
            is_norm = s.endswith("layer_norm")
            state[f"{dst}.{d}.weight"] = _float(variables, f"{src}/{s}/{'gamma' if is_norm else 'weight'}")
            state[f"{dst}.{d}.bias"] = _float(variables, f"{src}/{s}/{'beta' if is_norm else 'bias'}")
    config = {"d_model": d_model, "num_mel_bins": n_mels, "encoder_layers": len(layers),
              "encoder_attention_heads": heads, "encoder_ffn_dim": ffn,
              "max_source_positions": positions.shape[0]}
    return config, state


def ct2_whisper_decoder_state(variables: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    """``AttentionDecoder`` kwargs and state dict from CT2 variables (fused q/k/v split as PyTorch fuses them)."""
    embed = _float(variables, "decoder/embeddings/weight")
    vocab, d_model = embed.shape
    positions = _float(variables, "decoder/position_encodings/encodings")
    layers = sorted({int(k.split("/")[1][6:]) for k in variables if re.match(r"decoder/layer_\d+/", k)})
    heads = variables.get("decoder/num_heads")
    if heads is None:
        raise Ct2FormatError("model.bin lacks decoder/num_heads")
    state = {"embed.weight": embed, "pos": positions,
             "layers.norm.weight": _float(variables, "decoder/layer_norm/gamma"),
             "layers.norm.bias": _float(variables, "decoder/layer_norm/beta")}
    for i in layers:
        src, dst = f"decoder/layer_{i}", f"layers.layers.{i}"
        cross_q_w, cross_q_b = _float(variables, f"{src}/attention/linear_0/weight"), _float(variables, f"{src}/attention/linear_0/bias")
        cross_kv_w, cross_kv_b = _float(variables, f"{src}/attention/linear_1/weight"), _float(variables, f"{src}/attention/linear_1/bias")
        pairs = {"self_attention/linear_1": "self_attn.out_proj", "attention/linear_2": "multihead_attn.out_proj",
                 "ffn/linear_0": "linear1", "ffn/linear_1": "linear2", "self_attention/layer_norm": "norm1",
                 "attention/layer_norm": "norm2", "ffn/layer_norm": "norm3"}
        state.update({
            f"{dst}.self_attn.in_proj_weight": _float(variables, f"{src}/self_attention/linear_0/weight"),
            f"{dst}.self_attn.in_proj_bias": _float(variables, f"{src}/self_attention/linear_0/bias"),
            f"{dst}.multihead_attn.in_proj_weight": torch.cat([cross_q_w, cross_kv_w]),
            f"{dst}.multihead_attn.in_proj_bias": torch.cat([cross_q_b, cross_kv_b]),
        })
        for s, d in pairs.items():
            is_norm = s.endswith("layer_norm")
            state[f"{dst}.{d}.weight"] = _float(variables, f"{src}/{s}/{'gamma' if is_norm else 'weight'}")
            state[f"{dst}.{d}.bias"] = _float(variables, f"{src}/{s}/{'beta' if is_norm else 'bias'}")
    config = {"vocab_size": vocab, "d_model": d_model, "num_layers": len(layers),
              "num_heads": int(np.asarray(heads).item()),
              "ffn_dim": _float(variables, "decoder/layer_0/ffn/linear_0/weight").shape[0],
              "max_len": positions.shape[0], "activation": "gelu", "learned_positions": True,
              "scale_embedding": False, "tie_output": True}
    return config, state


def import_whisper(ct2_dir: str | Path, out_dir: str | Path, keep_ct2: bool = False, hf: bool = True) -> Path:
    """Write a transformers ``WhisperEncoder`` directory (config.json + model.safetensors), plus the
    decoder (decoder.safetensors + decoder.json) and Whisper's tokenizer.json when the CT2 dir has one.
    ``keep_ct2`` also copies the CTranslate2 model itself to ``<out>/ct2`` (the zero-shot baseline).
    ``hf`` (with a tokenizer.json) also writes ``<out>/hf``, the full ``WhisperForConditionalGeneration``
    with its generation config and processor (:func:`speechalign.models.whisper_hf.export_whisper_hf`)."""
    import shutil

    from safetensors.torch import save_file
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    model_bin = ct2_dir / "model.bin"
    if not model_bin.is_file():
        raise FileNotFoundError(f"{ct2_dir}: no model.bin (expected a CTranslate2 model directory)")
    spec, variables = read_ct2_model(model_bin)
    if spec != "WhisperSpec":
        raise Ct2FormatError(f"{model_bin}: spec {spec!r} is not a Whisper model")
    config_kwargs, state = ct2_whisper_encoder_state(variables)
    encoder = WhisperEncoder(WhisperConfig(**config_kwargs))
    encoder.load_state_dict(state, strict=True)
    encoder.config.architectures = ["WhisperEncoder"]
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    encoder.save_pretrained(tmp, safe_serialization=True)
    dec_config, dec_state = ct2_whisper_decoder_state(variables)
    save_file({k: v.contiguous() for k, v in dec_state.items()}, str(tmp / "decoder.safetensors"))
    (tmp / "decoder.json").write_text(json.dumps(dec_config, indent=1), encoding="utf-8")
    if (ct2_dir / "tokenizer.json").is_file():
        shutil.copy(ct2_dir / "tokenizer.json", tmp / "tokenizer.json")
    if keep_ct2:
        shutil.copytree(ct2_dir, tmp / "ct2")
    source = str((out_dir / "ct2").resolve()) if keep_ct2 else str(ct2_dir.resolve())
    (tmp / "ct2_source.json").write_text(json.dumps({"ct2_dir": source, "spec": spec}), encoding="utf-8")
    if hf and (tmp / "tokenizer.json").is_file() and (ct2_dir / "config.json").is_file():
        from speechalign.models.whisper_hf import export_whisper_hf

        export_whisper_hf(tmp, tmp / "hf", ct2_dir=ct2_dir)
    elif hf:
        import logging

        logging.getLogger("speechalign.models").warning(
            "%s: no tokenizer.json or config.json, so no transformers WhisperForConditionalGeneration dir (hf/) "
            "is written", ct2_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
