"""Recordings of any length: speech found by Silero VAD (faster-whisper's), read in the format the model knows.

* A Whisper experiment trained in packed 30-s windows (``model.whisper.length_mode: pad30``) reads consecutive
  speech segments packed into 30-s windows with the gap training used (``data.pack.gap``); each window's text
  goes back to its segments by CTC forced alignment (``decode/align.py``). ``pack=False`` reads one segment per
  window instead (no split, but a whole 30-s window per segment).
* Every other encoder (trimmed Whisper, conformer, wav2vec2, CTC-only models) reads each segment as one
  utterance, at most ``VadSettings.max_segment_s`` long, so memory does not grow with the recording.

Windows are decoded a batch at a time, with a progress bar; a segment's times are the VAD's, in the
recording's own clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from speechalign.data.dataset import collate_audio
from speechalign.data.packing import SAMPLE_RATE, join_audio, pack_in_order, spans
from speechalign.decode.align import split_text

log = logging.getLogger("speechalign.decode")


@dataclass
class VadSettings:
    """Silero VAD's options (``faster_whisper.vad.VadOptions``). The defaults keep the pauses between read
    sentences (0.3 s and longer) as segment boundaries, and pad each segment by 0.1 s."""

    threshold: float = 0.5
    min_silence_ms: int = 300
    speech_pad_ms: int = 100
    min_speech_ms: int = 100
    max_segment_s: float = 30.0

    def options(self):
        from faster_whisper.vad import VadOptions

        return VadOptions(threshold=self.threshold, min_silence_duration_ms=self.min_silence_ms,
                          speech_pad_ms=self.speech_pad_ms, min_speech_duration_ms=self.min_speech_ms,
                          max_speech_duration_s=self.max_segment_s)


@dataclass
class Segment:
    start: float    # seconds from the start of the recording
    end: float
    text: str


VAD_BLOCK = 5 * 60 * SAMPLE_RATE   # samples the VAD reads at once: its copies of the audio stay this small


def speech_spans(audio: np.ndarray, vad: VadSettings, name: str) -> list[tuple[int, int]]:
    """(start, end) samples of each speech segment; a recording without speech is an error naming it.
    The VAD reads 5-minute blocks, so its working memory does not grow with the recording; a segment that a
    block edge cut in two (less than the minimum silence apart) is joined again."""
    from faster_whisper.vad import get_speech_timestamps

    found: list[tuple[int, int]] = []
    joinable = vad.min_silence_ms * SAMPLE_RATE // 1000 + 2 * vad.speech_pad_ms * SAMPLE_RATE // 1000
    for offset in range(0, len(audio), VAD_BLOCK):
        block = audio[offset : offset + VAD_BLOCK]
        for k, s in enumerate(get_speech_timestamps(block, vad.options(), sampling_rate=SAMPLE_RATE)):
            start, end = offset + int(s["start"]), offset + int(s["end"])
            cut_at_edge = (k == 0 and found and start < offset + joinable and found[-1][1] > offset - joinable
                           and end - found[-1][0] <= vad.max_segment_s * SAMPLE_RATE)
            if cut_at_edge:
                found[-1] = (found[-1][0], end)
            else:
                found.append((start, end))
    if not found:
        raise ValueError(f"{name}: the VAD found no speech in {len(audio) / SAMPLE_RATE:.1f} s of audio "
                         f"(threshold {vad.threshold}; lower --vad-threshold if the recording is quiet)")
    return found


class LongForm:
    """``engine`` (a ``decode/engines.py`` engine of ``model``) over a whole recording."""

    def __init__(self, engine, model, tokenizer, vad: VadSettings | None = None, pack: bool | None = None,
                 gap: float = 0.3, batch_seconds: float = 120.0, variety: str | None = None,
                 max_length: int | None = None):
        self.engine, self.model, self.vad = engine, model, vad or VadSettings()
        self.token2id = tokenizer.token2id
        windowed = getattr(model.encoder, "length_mode", None) == "pad30"
        if pack and not windowed:
            raise ValueError("packed long-form decoding needs a Whisper experiment read in 30-s windows "
                             "(model.whisper.length_mode: pad30)")
        self.pack = windowed if pack is None else pack
        max_samples = getattr(model.encoder, "max_samples", None)
        if max_samples is not None and self.vad.max_segment_s > max_samples / SAMPLE_RATE:
            # e.g. a trimmed Whisper with a silence tail reads 29.5 s at most: segments are cut to fit it
            self.vad = replace(self.vad, max_segment_s=max_samples / SAMPLE_RATE)
        self.window = min(30.0, self.vad.max_segment_s) if self.pack else self.vad.max_segment_s
        self.gap, self.batch_seconds, self.variety = gap, batch_seconds, variety
        # A packed window's text is several utterances' long: the decoder's whole length, not one utterance's.
        self.max_len = (model.decoder.max_len - len(model.att_prefix) - 1
                        if self.pack and model.decoder is not None else None)
        if max_length:
            self.max_len = min(self.max_len or max_length, max_length)

    def describe(self) -> str:
        v = self.vad
        how = (f"packed into {self.window:g}-s windows ({self.gap:g}-s gaps), split by CTC alignment" if self.pack
               else "one segment per input")
        return (f"long-form: Silero VAD (threshold {v.threshold}, min silence {v.min_silence_ms} ms, pad "
                f"{v.speech_pad_ms} ms, max segment {v.max_segment_s:g} s), {how}")

    def __call__(self, audio: np.ndarray, name: str, progress: bool = True) -> list[Segment]:
        found = speech_spans(audio, self.vad, name)
        durations = [(e - s) / SAMPLE_RATE for s, e in found]
        groups = pack_in_order(durations, self.window, self.gap) if self.pack else [[i] for i in range(len(found))]
        segments: list[Segment] = []
        per_batch = max(1, int(self.batch_seconds // (30.0 if self.pack else max(self.window, 1.0))))
        bar = tqdm(total=len(audio) / SAMPLE_RATE, desc=f"transcribe {name}", unit="s", disable=not progress,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")
        for b in range(0, len(groups), per_batch):
            batch = groups[b : b + per_batch]
            parts = {i: audio[found[i][0] : found[i][1]] for g in batch for i in g}
            texts = read_windows(self.engine, parts, batch, self.gap, self.token2id,
                                 None if self.variety is None else [self.variety] * len(batch),
                                 [f"{name}:{b + k}" for k in range(len(batch))], self.max_len)
            segments += [Segment(found[i][0] / SAMPLE_RATE, found[i][1] / SAMPLE_RATE, texts[i].strip())
                         for g in batch for i in g]
            bar.update(min(found[batch[-1][-1]][1], len(audio)) / SAMPLE_RATE - bar.n)
        bar.update(bar.total - bar.n)
        bar.close()
        return segments


def read_windows(engine, parts: dict[int, np.ndarray], groups: list[list[int]], gap: float,
                 token2id: dict[str, int], dialects: list[str] | None = None, ids: list[str] | None = None,
                 max_len: int | None = None) -> dict[int, str]:
    """The text of each part: every group of parts joined into one window (``gap`` seconds apart), the windows
    decoded as one batch by ``engine``, and each window's text split back by CTC alignment."""
    wav, lens = collate_audio([join_audio([parts[i] for i in g], gap) for g in groups])
    out = engine(wav, lens, dialects, ids, max_len)
    texts = {}
    for k, g in enumerate(groups):
        frames = [(s / out.frame_shift, e / out.frame_shift) for s, e in spans([len(parts[i]) / SAMPLE_RATE
                                                                               for i in g], gap)]
        pieces = split_text(out.texts[k], out.log_probs[k, : int(out.speech_frames[k])], token2id, frames)
        texts.update(zip(g, pieces))
    return texts


def whole(audio: np.ndarray, engine, variety: str | None = None) -> list[Segment]:
    """A short recording read as one utterance (no VAD): one segment over the whole file."""
    wav, lens = collate_audio([audio])
    with torch.no_grad():
        out = engine(wav, lens, None if variety is None else [variety], None, None)
    return [Segment(0.0, len(audio) / SAMPLE_RATE, out.texts[0])]
