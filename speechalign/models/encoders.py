"""Speech encoders returning every layer's hidden states and their valid lengths.

``ENCODERS`` maps a config name to a builder; all encoders take raw 16 kHz waveforms (B, N) with
their lengths and own their feature front end, so a checkpoint is self-contained. Encoders with a
spectrogram front end (``accepts_features``) also take that front end's output, precomputed, as
(B, T, F) with frame counts (``speechalign compute-features``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from speechalign.models.frontend import HOP, LogFbank, WhisperLogMel, frames_for
from speechalign.models.states import EncoderOutput, padding_mask   # every encoder's output, re-exported


POOLING = ("mean", "max", "meanstd")


def pool(states: torch.Tensor, lengths: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, T, D) states -> (B, D') pooled over valid frames only (padding never counts)."""
    valid = (torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]).unsqueeze(-1)
    n = lengths.clamp(min=1)[:, None].to(states.dtype)
    mean = (states * valid).sum(1) / n
    if mode == "mean":
        return mean
    if mode == "max":
        return states.masked_fill(~valid, -torch.inf).amax(1)
    if mode == "meanstd":
        var = (((states - mean[:, None]) * valid) ** 2).sum(1) / n
        return torch.cat([mean, var.clamp(min=0).sqrt()], dim=-1)
    raise ValueError(f"unknown pooling {mode!r}; choose from {POOLING}")


class SpecAugmentMixin:
    """Applies lhotse's SpecAugment to (B, T, F) features during training when enabled."""

    spec_augment = None

    def enable_spec_augment(self, enabled: bool) -> None:
        if enabled:
            from lhotse.dataset import SpecAugment

            self.spec_augment = SpecAugment(time_warp_factor=None, num_frame_masks=2, frames_mask_size=30,
                                            max_frames_mask_fraction=0.2, features_mask_size=10)
        else:
            self.spec_augment = None

    def _augment(self, feats: torch.Tensor) -> torch.Tensor:
        if self.spec_augment is not None and self.training:
            return self.spec_augment(feats)
        return feats


def whisper_frames(num_samples: torch.Tensor) -> torch.Tensor:
    """Encoder frames of ``num_samples`` of audio read by Whisper: 10-ms mel frames, halved by its stride-2
    convolution (what :meth:`WhisperSpeechEncoder.embed` counts as an utterance's own frames)."""
    return torch.div(frames_for(num_samples) + 1, 2, rounding_mode="floor")


class WhisperSpeechEncoder(SpecAugmentMixin, nn.Module):
    """transformers ``WhisperEncoder`` with the Whisper log-mel front end.

    ``length_mode="pad30"`` pads every input to 30 s exactly as Whisper was trained: the decoder and CTC read
    the whole window, as Whisper's decoder was trained to, and embeddings the utterance's own frames
    (``speech_lengths``); ``"trim"`` runs only the real frames (positional table sliced, padding masked), plus
    ``tail_seconds`` of silence appended to each utterance: pretrained Whisper's decoder reads a memory
    that ends in silence (bench/whisper_memory_tail.py: on goo-gi dev Mandarin, greedy, 180.1 % trimmed,
    68.9 / 41.0 % with 1 / 2 s of silence appended, 19.9 % with silence up to 30 s).
    """

    def __init__(self, encoder, length_mode: str = "trim", tail_seconds: float = 0.0):
        super().__init__()
        if length_mode not in ("trim", "pad30"):
            raise ValueError(f"whisper.length_mode must be 'trim' or 'pad30', got {length_mode!r}")
        tail_frames = round(tail_seconds * 50)
        if tail_seconds < 0 or abs(tail_frames - tail_seconds * 50) > 1e-6:
            raise ValueError(f"whisper.tail_seconds must be >= 0 and a multiple of 0.02 s, got {tail_seconds}")
        if tail_frames and length_mode != "trim":
            raise ValueError("whisper.tail_seconds: only with length_mode=trim (pad30 pads to 30 s already)")
        self.encoder = encoder
        self.length_mode = length_mode
        self.tail_frames = tail_frames  # output frames (20 ms); the input gets tail_frames * 320 zero samples
        self.frontend = WhisperLogMel(encoder.config.num_mel_bins)
        self.hf_config = encoder.config
        self.max_frames = encoder.config.max_source_positions * 2

    frame_shift = 0.02  # seconds per output frame
    accepts_features = True
    min_samples = 160   # one 10-ms mel frame

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layers)

    @property
    def max_samples(self) -> int:
        """The longest input: 30 s, less the appended silence (and its parity frame)."""
        return (self.max_frames - 2 * self.tail_frames - (1 if self.tail_frames else 0)) * 160

    @property
    def dim(self) -> int:
        return self.encoder.config.d_model

    def frontend_modules(self) -> list[nn.Module]:
        return [self.encoder.conv1, self.encoder.conv2, self.encoder.embed_positions]

    def layer_modules(self) -> list[nn.Module]:
        return list(self.encoder.layers)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> EncoderOutput:
        return self.run_layers(*self.embed(wav, wav_lens))

    def embed(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Front end, convolutions and positions: the input of layer 0 (B, T, D) and its valid frames."""
        if wav.dim() == 3:
            if self.length_mode == "pad30":
                raise ValueError("whisper length_mode=pad30 needs waveforms, not precomputed features")
            if self.tail_frames:
                raise ValueError("whisper tail_seconds needs waveforms, not precomputed features")
            feats, lens = wav.transpose(1, 2), wav_lens
        else:
            if self.tail_frames:
                wav, wav_lens = self._append_silence(wav, wav_lens)
            if self.length_mode == "pad30":
                target = self.max_frames * 160
                if wav.shape[1] > target:
                    raise ValueError(f"whisper pad30: input of {wav.shape[1] / 16000:.1f}s exceeds 30 s")
                wav = nn.functional.pad(wav, (0, target - wav.shape[1]))
            feats, lens = self.frontend(wav, wav_lens)
        if feats.shape[-1] > self.max_frames:
            raise ValueError(f"whisper: input of {feats.shape[-1] / 100 - self.tail_frames / 50:.1f}s exceeds "
                             f"{self.max_samples / 16000:g} s")
        if self.length_mode == "trim":
            feats = self.frontend.zero_padding(feats, lens)
        feats = self._augment(feats.transpose(1, 2)).transpose(1, 2)
        enc = self.encoder
        x = nn.functional.gelu(enc.conv1(feats))
        if self.length_mode == "trim":
            x = self.frontend.zero_padding(x, lens)
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        x = nn.functional.dropout(x, p=enc.dropout, training=self.training)
        return x, torch.div(lens + 1, 2, rounding_mode="floor")

    def _append_silence(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each utterance followed by ``tail_frames`` frames of zeros (whatever padding the batch had), and
        one 10-ms frame more where that leaves an odd count of feature frames: the last stride-2 convolution
        then reads silence, not its zero padding, as in pretraining (bench/whisper_memory_tail.py, silence up
        to 30 s: 19.9 % -> 16.1 %; with 1-3 s the CER did not change)."""
        tail = self.tail_frames * 320
        odd = frames_for(wav_lens) % 2
        wav = nn.functional.pad(wav * ~padding_mask(wav_lens, wav.shape[1]), (0, tail + HOP))
        return wav, wav_lens + tail + HOP * odd

    def run_layers(self, x: torch.Tensor, out_lens: torch.Tensor, start: int = 0) -> EncoderOutput:
        """Layers ``start``.. on ``x``, the input of layer ``start``. The states of the layers before
        ``start`` are not known here and are None in the output (training from cached states)."""
        enc = self.encoder
        mask = self._attention_mask(x, out_lens)
        states = [None] * start
        for layer in enc.layers[start:]:
            states.append(x)
            x = layer(x, mask, layer_head_mask=None)[0]
        states.append(enc.layer_norm(x))
        if self.length_mode == "pad30":
            return EncoderOutput(states, torch.full_like(out_lens, x.shape[1]), out_lens)
        t = out_lens.max().item()
        # The bounds of this data-dependent slice, which torch.export (ONNX export) cannot infer alone.
        torch._check(t >= 0)
        torch._check(t <= x.shape[1])
        return EncoderOutput([s if s is None else s[:, :t] for s in states], out_lens,
                             out_lens - self.tail_frames if self.tail_frames else None)

    def _attention_mask(self, x: torch.Tensor, out_lens: torch.Tensor) -> torch.Tensor | None:
        if self.length_mode != "trim":
            return None
        pad = padding_mask(out_lens, x.shape[1])
        mask = torch.zeros(pad.shape, dtype=x.dtype, device=x.device).masked_fill(pad, torch.finfo(x.dtype).min)
        return mask[:, None, None, :]

    @torch.no_grad()
    def prefix_states(self, wav: torch.Tensor, wav_lens: torch.Tensor, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The input of layer ``layers`` (front end and the first ``layers`` layers, no augmentation),
        for caching the frozen part of the encoder; trim mode only, where each utterance's real frames do
        not depend on what it is batched with."""
        if self.length_mode != "trim":
            raise ValueError("cached encoder states need whisper length_mode=trim")
        augment, self.spec_augment = self.spec_augment, None
        try:
            x, lens = self.embed(wav, wav_lens)
        finally:
            self.spec_augment = augment
        mask = self._attention_mask(x, lens)
        for layer in self.encoder.layers[:layers]:
            x = layer(x, mask, layer_head_mask=None)[0]
        return x[:, : int(lens.max())], lens


class Conv2dSubsampling(nn.Module):
    """Stride-2 convolutions: (B, T, F) -> (B, ~T/rate, d_model); rate 4 = two of them, 8 = three.

    With ``channels`` = d_model (WeNet's layout) the second convolution costs more than four small
    conformer layers on CPU; 64 channels make it about 4x cheaper (bench/subsampling.py). Rate 8 halves
    every layer above it (12.5 frames/s: still two frames per character of read Chinese)."""

    RATES = {4: 2, 8: 3}   # rate -> number of stride-2 convolutions

    def __init__(self, in_dim: int, d_model: int, channels: int | None = None, rate: int = 4):
        super().__init__()
        if rate not in self.RATES:
            raise ValueError(f"model.conformer.subsampling_rate: {rate} is not one of {sorted(self.RATES)}")
        c = channels or d_model
        self.num_convs = self.RATES[rate]
        layers, f = [], in_dim
        for i in range(self.num_convs):
            layers += [nn.Conv2d(1 if i == 0 else c, c, 3, 2), nn.ReLU()]
            f = (f - 1) // 2
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(c * f, d_model)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x.unsqueeze(1))
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        for _ in range(self.num_convs):
            lens = torch.div(lens - 1, 2, rounding_mode="floor")
        return x, lens.clamp(min=0)


class ConformerSpeechEncoder(SpecAugmentMixin, nn.Module):
    """torchaudio ``Conformer`` layers on 80-dim log fbank with 4x (or 8x) convolutional subsampling."""

    def __init__(self, cfg):
        super().__init__()
        from torchaudio.models import Conformer

        self.frontend = LogFbank(cfg.num_mel_bins)
        self.subsampling = Conv2dSubsampling(cfg.num_mel_bins, cfg.d_model, cfg.subsampling_channels,
                                             cfg.subsampling_rate)
        # one 512-sample window, then the frames the convolutions need for one output (7 for 4x, 15 for 8x)
        self.frame_shift = 0.01 * cfg.subsampling_rate
        self.min_samples = 512 + (2 ** (self.subsampling.num_convs + 1) - 2) * 160
        self.conformer = Conformer(input_dim=cfg.d_model, num_heads=cfg.num_heads, ffn_dim=cfg.ffn_dim,
                                   num_layers=cfg.num_layers, depthwise_conv_kernel_size=cfg.kernel_size,
                                   dropout=cfg.dropout)
        self.hf_config = None
        self._dim = cfg.d_model

    accepts_features = True

    @property
    def num_layers(self) -> int:
        return len(self.conformer.conformer_layers)

    @property
    def dim(self) -> int:
        return self._dim

    def frontend_modules(self) -> list[nn.Module]:
        return [self.subsampling]

    def layer_modules(self) -> list[nn.Module]:
        return list(self.conformer.conformer_layers)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> EncoderOutput:
        feats, lens = (wav, wav_lens) if wav.dim() == 3 else self.frontend(wav, wav_lens)
        x, lens = self.subsampling(self._augment(feats), lens)
        pad = padding_mask(lens, x.shape[1])
        states = [x]
        x = x.transpose(0, 1)
        for layer in self.conformer.conformer_layers:
            x = _masked_conformer_layer(layer, x, pad)
            states.append(x.transpose(0, 1))
        return EncoderOutput(states, lens)


def _masked_conformer_layer(layer, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """torchaudio ``ConformerLayer.forward`` (convolution after attention) with padded frames zeroed
    before the depthwise convolution, which torchaudio lets read padding; that made an utterance's
    states depend on what it was batched with. (T, B, D) in and out; ``pad`` is (B, T)."""
    x = layer.ffn1(x) * 0.5 + x
    residual = x
    y = layer.self_attn_layer_norm(x)
    y, _ = layer.self_attn(query=y, key=y, value=y, key_padding_mask=pad, need_weights=False)
    x = layer.self_attn_dropout(y) + residual
    conv = layer.conv_module
    y = conv.layer_norm(x.transpose(0, 1)).transpose(1, 2)
    pointwise, glu, depthwise, *rest = conv.sequential
    y = glu(pointwise(y)).masked_fill(pad[:, None, :], 0.0)
    y = depthwise(y)
    for module in rest:
        y = module(y)
    x = x + y.permute(2, 0, 1)
    x = layer.ffn2(x) * 0.5 + x
    return layer.final_layer_norm(x)


def _whisper(cfg, hf_config_path: Path | None = None) -> WhisperSpeechEncoder:
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    w = cfg.model.whisper
    if hf_config_path is not None:
        encoder = WhisperEncoder(WhisperConfig.from_json_file(str(hf_config_path)))
    elif w.pretrained:
        encoder = load_pretrained_whisper_encoder(w.pretrained)
    else:
        encoder = WhisperEncoder(WhisperConfig(
            num_mel_bins=w.num_mel_bins, d_model=w.d_model, encoder_layers=w.encoder_layers,
            encoder_attention_heads=w.encoder_attention_heads, encoder_ffn_dim=w.encoder_ffn_dim,
            max_source_positions=w.max_source_positions, dropout=w.dropout))
    return WhisperSpeechEncoder(encoder, w.length_mode, w.tail_seconds)


def load_pretrained_whisper_encoder(name_or_path: str):
    """A ``WhisperEncoder`` from an encoder-only dir (``import-whisper`` output) or a full Whisper
    checkpoint (hub id or dir); missing or unexpected weights are an error, never silently ignored."""
    from transformers import WhisperConfig, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    name_or_path = os.path.expanduser(name_or_path)
    config_file = Path(name_or_path) / "config.json"
    encoder_only = config_file.is_file() and "WhisperEncoder" in json.loads(config_file.read_text()).get("architectures", [])
    if encoder_only:
        encoder, info = WhisperEncoder.from_pretrained(name_or_path, output_loading_info=True)
    else:
        model, info = WhisperModel.from_pretrained(name_or_path, output_loading_info=True)
        encoder = model.get_encoder()
        info = {k: [n for n in v if n.startswith("encoder.")] for k, v in info.items() if isinstance(v, list)}
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise ValueError(f"{name_or_path}: Whisper encoder weights do not match its config: {bad}")
    assert isinstance(encoder.config, WhisperConfig)
    return encoder


def load_speech_encoder(name_or_dir: str, random_init: bool = False, length_mode: str | None = None,
                        values: dict | None = None) -> nn.Module:
    """The encoder of any supported transformers speech model ``name_or_dir`` (a hub id or a directory): its
    weights, or with ``random_init`` its architecture only. Whisper is read by :class:`WhisperSpeechEncoder`
    (``length_mode`` trim or pad30), every other family by
    :class:`~speechalign.models.hf_encoder.HFSpeechEncoder`. ``values`` set fields of the model's config that
    leave its weights' shapes alone (``layerdrop``, dropouts)."""
    from speechalign.models.hf_encoder import load_hf_encoder, speech_config

    name_or_dir = os.path.expanduser(str(name_or_dir))
    config = speech_config(name_or_dir, values)
    if config.model_type != "whisper":
        if length_mode:
            raise ValueError(f"{name_or_dir}: --length-mode applies to Whisper encoders, this is {config.model_type}")
        return load_hf_encoder(name_or_dir, config, random_init)
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    encoder = WhisperEncoder(config) if random_init else load_pretrained_whisper_encoder(name_or_dir)
    return WhisperSpeechEncoder(encoder, length_mode or "trim")


def _wav2vec2(cfg, hf_config_path: Path | None = None) -> nn.Module:
    """``model.encoder: wav2vec2``: a random init from the sizes of ``model.wav2vec2``, or its pretrained model;
    a random init reads the raw waveform with an attention mask, as this encoder always has."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from speechalign.models.hf_encoder import HFSpeechEncoder, load_hf_encoder, saved_speech_encoder, speech_config

    w = cfg.model.wav2vec2
    raw = Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)
    if hf_config_path is not None:
        return saved_speech_encoder(hf_config_path, raw)
    if w.pretrained:
        if (config := speech_config(w.pretrained)).model_type == "whisper":
            raise ValueError(f"model.wav2vec2.pretrained: {w.pretrained} is a Whisper model; use model.encoder: whisper")
        return load_hf_encoder(os.path.expanduser(w.pretrained), config)
    return HFSpeechEncoder(Wav2Vec2Model(Wav2Vec2Config(
        hidden_size=w.hidden_size, num_hidden_layers=w.num_hidden_layers,
        num_attention_heads=w.num_attention_heads, intermediate_size=w.intermediate_size,
        conv_dim=w.conv_dim, conv_stride=w.conv_stride, conv_kernel=w.conv_kernel,
        feat_extract_norm="layer", do_stable_layer_norm=True, hidden_dropout=w.hidden_dropout,
        mask_time_prob=w.mask_time_prob, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)), raw)


def _hf(cfg, hf_config_path: Path | None = None) -> nn.Module:
    """``model.encoder: hf``: the transformers speech model ``model.hf.pretrained`` names, or a random init of
    ``model.hf.model_type`` (the family of every dry run, which downloads nothing)."""
    from transformers import AutoModel

    from speechalign.models.hf_encoder import (HFSpeechEncoder, default_extractor, family_config, load_hf_encoder,
                                               saved_speech_encoder, speech_config)

    h = cfg.model.hf
    if hf_config_path is not None:
        return saved_speech_encoder(hf_config_path)
    if not h.pretrained and not h.model_type:
        raise ValueError("model.hf: set pretrained (a hub id or directory) or model_type (a random init)")
    config = speech_config(h.pretrained, h.config) if h.pretrained else family_config(h.model_type, h.config)
    if h.model_type and config.model_type != h.model_type:
        raise ValueError(f"model.hf.model_type: {h.model_type}, but {h.pretrained} is a {config.model_type} model")
    if config.model_type == "whisper":
        raise ValueError("model.hf: a Whisper model trains as model.encoder: whisper (model.whisper.pretrained takes the "
                         "same hub id or directory; its 30-s window and decoder options live there)")
    if h.pretrained:
        return load_hf_encoder(os.path.expanduser(h.pretrained), config)
    return HFSpeechEncoder(AutoModel.from_config(config), default_extractor(config))


def _conformer(cfg, hf_config_path: Path | None = None) -> ConformerSpeechEncoder:
    return ConformerSpeechEncoder(cfg.model.conformer)


ENCODERS = {"whisper": _whisper, "wav2vec2": _wav2vec2, "hf": _hf, "conformer": _conformer}


def build_encoder(cfg, hf_config_path: Path | None = None) -> nn.Module:
    """The encoder named by ``cfg.model.encoder``; with ``hf_config_path`` the architecture comes from
    a saved transformers config (weights to be loaded from a checkpoint, nothing downloaded)."""
    try:
        builder = ENCODERS[cfg.model.encoder]
    except KeyError:
        raise ValueError(f"model.encoder: unknown encoder {cfg.model.encoder!r}; known: {sorted(ENCODERS)}") from None
    return builder(cfg, hf_config_path)
