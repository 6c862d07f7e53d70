"""Encoders registry, CTC/attention ASR model."""

from speechalign.models.asr import ASRModel, build_model
from speechalign.models.encoders import ENCODERS, EncoderOutput, build_encoder

__all__ = ["ASRModel", "ENCODERS", "EncoderOutput", "build_encoder", "build_model"]
