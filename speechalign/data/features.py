"""Precomputed features: the encoder's own front end run once per cut through lhotse's feature
pipeline and stored lilcom-compressed, so training reads small arrays instead of decoding audio."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lhotse import LilcomChunkyWriter
from lhotse.features.base import FeatureExtractor, register_extractor
from lhotse.utils import compute_num_frames

from speechalign.data.manifest import open_cuts

log = logging.getLogger("speechalign.data")


@dataclass
class FrontendConfig:
    kind: str = "fbank"        # "fbank" (conformer) or "whisper" (log-mel)
    num_mel_bins: int = 80


@register_extractor
class EncoderFrontend(FeatureExtractor):
    """lhotse extractor wrapping speechalign's front ends, so stored features equal what the encoder
    computes on the fly (up to lilcom's quantization); stored as (T, F) at 100 frames per second."""

    name = "speechalign-frontend"
    config_type = FrontendConfig

    def __init__(self, config: FrontendConfig | None = None):
        super().__init__(config)
        from speechalign.models.frontend import LogFbank, WhisperLogMel

        fronts = {"fbank": LogFbank, "whisper": WhisperLogMel}
        if self.config.kind not in fronts:
            raise ValueError(f"front end {self.config.kind!r}: choose from {sorted(fronts)}")
        self.module = fronts[self.config.kind](self.config.num_mel_bins).eval()

    @property
    def frame_shift(self) -> float:
        return 0.01

    def feature_dim(self, sampling_rate: int) -> int:
        return self.config.num_mel_bins

    _cache: dict = {}

    @classmethod
    def shared(cls, config: FrontendConfig) -> "EncoderFrontend":
        """One instance per config and process (loader workers reuse it for every item)."""
        key = (config.kind, config.num_mel_bins)
        if key not in cls._cache:
            cls._cache[key] = cls(config)
        return cls._cache[key]

    def valid_features(self, samples: np.ndarray) -> np.ndarray:
        """(T, F) features of a 16 kHz waveform, exactly the frames the encoder would compute."""
        wav = torch.from_numpy(np.asarray(samples, dtype=np.float32).reshape(1, -1))
        with torch.no_grad():
            feats, lens = self.module(wav, torch.tensor([wav.shape[1]]))
        if self.config.kind == "whisper":
            feats = feats.transpose(1, 2)
        return feats[0, : int(lens[0])].numpy()

    def extract(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        """Valid frames, zero padded to lhotse's frame count for the duration (the reader trims them
        back with :func:`valid_frames`, as the fbank window leaves fewer frames than duration / shift)."""
        if sampling_rate != 16000:
            raise ValueError(f"front end expects 16 kHz audio, got {sampling_rate} Hz")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2:   # (channels, N): downmixed like the audio reader does
            samples = samples.mean(axis=0)
        valid = self.valid_features(samples)
        total = compute_num_frames(samples.size / sampling_rate, self.frame_shift, sampling_rate)
        return np.pad(valid, ((0, max(total - len(valid), 0)), (0, 0)))[:total]


def valid_frames(num_samples: int, kind: str) -> int:
    """Frames the front end produces from ``num_samples`` (25-ms fbank windows need a full window)."""
    if kind == "fbank":
        return max(0, (num_samples - 512) // 160 + 1)
    return num_samples // 160


def frontend_for(cfg) -> FrontendConfig:
    """The front end of the configured encoder (features must match the encoder they feed)."""
    name = cfg.model.encoder
    if name == "conformer":
        return FrontendConfig("fbank", cfg.model.conformer.num_mel_bins)
    if name == "whisper":
        if cfg.model.whisper.length_mode == "pad30":
            raise ValueError(f"data.features={cfg.data.features}: whisper length_mode=pad30 pads waveforms to 30 s "
                             "inside the model; use data.features=audio")
        return FrontendConfig("whisper", cfg.model.whisper.num_mel_bins)
    raise ValueError(f"model.encoder={name}: reads raw waveforms, there are no features to precompute")


def compute_features(cuts_path: str | Path, out_dir: str | Path, frontend: FrontendConfig,
                     num_jobs: int = 1) -> Path:
    """``<out>/<manifest name>`` with features in ``<out>/<stem>.feats/`` (lilcom chunky archives)."""
    cuts_path, out_dir = Path(cuts_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = cuts_path.name.split(".")[0]
    out = out_dir / cuts_path.name
    if out.exists():
        raise FileExistsError(f"{out}: already exists")
    cuts = open_cuts(cuts_path).to_eager().resample(16000)
    with_feats = cuts.compute_and_store_features(EncoderFrontend(frontend), out_dir / f"{stem}.feats",
                                                 num_jobs=num_jobs, storage_type=LilcomChunkyWriter)
    tmp = out.with_name(f".{out.name}.tmp.jsonl.gz")
    with_feats.to_file(tmp)
    os.replace(tmp, out)
    log.info("features of %d cuts (%s front end) -> %s", len(with_feats), frontend.kind, out)
    return out
