"""Tiny random-init transformers speech models of every family, saved as a hub directory holds them (config,
weights, feature extractor), built offline from their config classes."""

from __future__ import annotations

from pathlib import Path

import torch

from speechalign.models.hf_encoder import default_extractor, family_config, tiny_config

# name -> (model_type, config values, extractor settings): one of each family, each in a layout its pretrained
# checkpoints use (base models normalize their convolutions over time, large ones per frame with an attention mask)
TINY_MODELS = {
    "hubert": ("hubert", {}, {}),                                                   # hubert-base: group norm
    "hubert-large": ("hubert", {"feat_extract_norm": "layer", "do_stable_layer_norm": True}, {}),
    "wavlm": ("wavlm", {}, {"return_attention_mask": True, "do_normalize": False}),  # wavlm-base-plus
    "data2vec-audio": ("data2vec-audio", {}, {}),
    "wav2vec2-bert": ("wav2vec2-bert", {}, {}),
    "wav2vec2-conformer": ("wav2vec2-conformer", {"feat_extract_norm": "layer"}, {}),
    "wav2vec2": ("wav2vec2", {}, {}),                                               # wav2vec2-base: group norm
}


def save_tiny_model(out: Path, name: str, seed: int = 0) -> Path:
    """A random-init ``name`` of ``TINY_MODELS`` in ``out`` (``save_pretrained`` of model and extractor)."""
    from transformers import AutoModel

    model_type, values, extractor_values = TINY_MODELS[name]
    config = family_config(model_type, {**tiny_config(model_type), **values})
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(out)
    extractor = default_extractor(config)
    for key, value in extractor_values.items():
        setattr(extractor, key, value)
    extractor.save_pretrained(out)
    return out


def save_tiny_whisper(out: Path, seed: int = 0) -> Path:
    """A random-init Whisper encoder directory (what ``import-whisper`` writes)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    WhisperEncoder(WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                                 num_mel_bins=80)).save_pretrained(out)
    return out
