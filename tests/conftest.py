"""Shared test helpers: generated audio files in any layout a fake corpus needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def write_tone(path: str | Path, seconds: float = 1.0, sr: int = 16000, channels: int = 1,
               freq: float = 440.0, subtype: str | None = None) -> Path:
    """Write a short sine tone (creating parent dirs); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.1 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    sf.write(str(path), x, sr, subtype=subtype)
    return path


@pytest.fixture
def tone():
    return write_tone
