"""Batched feature front ends computed inside the model (so CPU, GPU and export agree)."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

SAMPLE_RATE = 16000
HOP = 160
N_FFT = 400


def frames_for(num_samples: torch.Tensor) -> torch.Tensor:
    """Number of 10-ms frames produced from ``num_samples`` (the last STFT frame is dropped)."""
    return torch.div(num_samples, HOP, rounding_mode="floor")


def power_spectrum(wav: torch.Tensor, n_fft: int, window: torch.Tensor, center: bool = True) -> torch.Tensor:
    """|STFT|^2 in ``wav``'s dtype, computed in float64: near-silent bins feed a log, and in float32 the rounding
    of two FFT implementations (torch's, onnxruntime's) moved features by up to 4e-3; in float64 by 1e-7."""
    stft = torch.stft(wav.double(), n_fft, HOP, win_length=window.shape[0], window=window, center=center,
                      return_complex=True)
    return (stft.abs() ** 2).to(wav.dtype)


class WhisperLogMel(nn.Module):
    """Whisper's log-mel spectrogram (equal to WhisperFeatureExtractor's), batched, per-utterance max."""

    def __init__(self, num_mel_bins: int = 80):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        filters = mel_filter_bank(num_frequency_bins=1 + N_FFT // 2, num_mel_filters=num_mel_bins,
                                  min_frequency=0.0, max_frequency=8000.0, sampling_rate=SAMPLE_RATE,
                                  norm="slaney", mel_scale="slaney")
        self.register_buffer("filters", torch.from_numpy(filters).float().T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, dtype=torch.float64), persistent=False)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) waveforms -> (B, n_mels, T) features and (B,) valid frame counts."""
        # Zeros past the end (not the STFT's reflection) so a lone utterance and a padded one agree.
        num_frames = wav.shape[1] // HOP
        wav = nn.functional.pad(wav.to(self.filters.dtype), (0, N_FFT // 2))
        power = power_spectrum(wav, N_FFT, self.window)
        torch._check(num_frames <= power.shape[-1])  # a fact torch.export (ONNX) cannot derive; no-op in eager
        power = power[..., :num_frames]
        log_spec = torch.clamp(self.filters @ power, min=1e-10).log10()
        lens = frames_for(wav_lens)
        valid = torch.arange(log_spec.shape[-1], device=wav.device)[None, :] < lens[:, None]
        peak = log_spec.masked_fill(~valid[:, None, :], -torch.inf).amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0, lens

    @staticmethod
    def zero_padding(feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Zero the frames past each utterance's end, as a lone utterance's convolution sees them."""
        valid = torch.arange(feats.shape[-1], device=feats.device)[None, :] < lens[:, None]
        return feats * valid[:, None, :]


class LogFbank(nn.Module):
    """Log-mel filterbank (25 ms / 10 ms, no centre padding, so padding never leaks into valid
    frames) with per-utterance mean/variance normalization over valid frames."""

    def __init__(self, num_mel_bins: int = 80):
        super().__init__()
        # Kept for its mel filterbank (and the checkpoints' buffer names); the STFT is power_spectrum's.
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=512, win_length=N_FFT, hop_length=HOP, n_mels=num_mel_bins, center=False)
        self.register_buffer("window", torch.hann_window(N_FFT, dtype=torch.float64), persistent=False)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) waveforms -> (B, T, n_mels) features and (B,) valid frame counts."""
        if wav.shape[1] < 512:
            wav = nn.functional.pad(wav, (0, 512 - wav.shape[1]))
        # float64 up to the normalization: a near-constant channel (silence, a pure tone) has a tiny
        # variance, and dividing by it turned float32 rounding into 3e-3 of difference between runtimes.
        power = power_spectrum(wav.double(), 512, self.window, center=False)
        feats = (torch.matmul(power.transpose(1, 2), self.mel.mel_scale.fb.double()) + 1e-6).log()
        lens = (torch.div(wav_lens - 512, HOP, rounding_mode="floor") + 1).clamp(min=0)
        valid = (torch.arange(feats.shape[1], device=wav.device)[None, :] < lens[:, None]).unsqueeze(-1)
        n = lens.clamp(min=1)[:, None, None].double()
        mean = (feats * valid).sum(1, keepdim=True) / n
        var = (((feats - mean) * valid) ** 2).sum(1, keepdim=True) / n
        return (((feats - mean) / (var + 1e-5).sqrt()) * valid).to(wav.dtype), lens
