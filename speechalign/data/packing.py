"""Training cuts packed back to back into windows of at most ``data.pack.window`` seconds.

Pretrained Whisper reads a 30-s window full of speech better than one padded utterance (greedy Mandarin CER
on goo-gi 121-170: 9.2 % packed, 13.6 % one utterance padded, 103 % trimmed), so a packed run trains in the
format the model was pretrained on. The plan is made per sampler batch, in the loader, and depends only on the
seed and the batch's cut ids: epochs, resume, DDP ranks, workers and Shar need nothing of their own.

lhotse's ``CutConcatenate`` packs longest-first into MixedCuts; here the cuts keep their sampled order (the
target is their texts joined in that order) and each cut is read on its own, so one unreadable file leaves
its window with a count instead of failing it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from lhotse.cut import Cut

from speechalign.data.manifest import cut_meta

SAMPLE_RATE = 16000


@dataclass
class Window:
    cuts: list[Cut] = field(default_factory=list)
    seconds: float = 0.0            # audio plus the gaps between cuts
    tokens: int = 0                 # attention target tokens, when the packer has a budget
    single: bool = False            # one cut alone by choice (the single_share), never filled further
    timestamps: bool = False        # its decoder target carries timestamp tokens (the timestamp_share)


@dataclass
class TargetBudget:
    """The longest attention target a window may hold: the decoder's positions less its prefix and end token
    (Whisper: 448). A window's target is its cuts' tokens one after another (``ASRModel.attention_targets``),
    so the count is exact."""

    limit: int
    vocab: object = None            # a WhisperVocab (BPE), or None: one token per character
    per_cut: int = 0                # tokens around each cut's text (2 with timestamp tokens: its start and end)

    def cost(self, cut: Cut) -> int:
        text = cut_meta(cut)["text"]
        return self.per_cut + (len(self.vocab.encode(text)) if self.vocab is not None else len(text))


@dataclass
class WindowPacker:
    window: float                   # seconds
    gap: float = 0.3
    single_share: float = 0.0
    group: str = "mixed"            # or "variety"
    seed: int = 0
    budget: TargetBudget | None = None
    timestamp_share: float = 0.0
    apart: tuple[str, ...] = ()     # varieties packed only with their own (in mixed windows)
    # two utterances of one sentence_id never share a window: a cross-dialect alignment term (model.align) pools
    # each one's own frames, and inside one window self-attention would let each read the other
    apart_sentences: bool = False

    @classmethod
    def from_config(cls, pack, seed: int, budget: TargetBudget | None = None,
                    apart_sentences: bool = False) -> "WindowPacker | None":
        if not pack.window:
            return None
        return cls(pack.window, pack.gap, pack.single_share, pack.group, seed, budget, pack.timestamp_share,
                   tuple(pack.apart), apart_sentences)

    def plan(self, cuts: list[Cut]) -> list[Window]:
        """First fit in sampled order: each cut joins the first open window of its group (its variety, or for
        mixed windows "the rest" unless its variety is kept ``apart``) it fits in; a new
        window is, with probability ``single_share``, a single cut padded with silence. Windows are
        returned in the order they were opened."""
        key = f"{self.seed}:{len(cuts)}:{cuts[0].id if cuts else ''}"
        rng = random.Random(key)
        # A stream of its own, so that a timestamp share leaves the windows themselves unchanged.
        ts_rng = random.Random(f"timestamps:{key}")
        windows: list[Window] = []
        open_by_group: dict[str, list[Window]] = {}
        for cut in cuts:
            if cut.duration > self.window:
                raise ValueError(f"cut {cut.id} of {cut.duration:.2f} s does not fit a {self.window:g}-s window "
                                 "(data.max_utt_duration must not exceed data.pack.window)")
            variety = cut_meta(cut)["dialect"]
            key = variety if self.group == "variety" or variety in self.apart else ""
            tokens = self.budget.cost(cut) if self.budget else 0
            sentence = cut_meta(cut)["sentence_id"] if self.apart_sentences else None
            fits = [w for w in open_by_group.get(key, []) if w.seconds + self.gap + cut.duration <= self.window
                    and (self.budget is None or w.tokens + tokens <= self.budget.limit)
                    and not (sentence and any(cut_meta(c)["sentence_id"] == sentence for c in w.cuts))]
            if fits:
                fits[0].cuts.append(cut)
                fits[0].seconds += self.gap + cut.duration
                fits[0].tokens += tokens
                continue
            new = Window([cut], cut.duration, tokens, rng.random() < self.single_share,
                         ts_rng.random() < self.timestamp_share)
            windows.append(new)
            if not new.single:
                open_by_group.setdefault(key, []).append(new)
        return windows


def fit_length(audio: np.ndarray, duration: float) -> np.ndarray:
    """The waveform at exactly its declared duration: decoders disagree by a few frames (read_item allows
    0.1 s), and a window is planned from declared durations."""
    n = round(duration * SAMPLE_RATE)
    return audio[:n] if len(audio) >= n else np.pad(audio, (0, n - len(audio)))


def join_audio(parts: list[np.ndarray], gap: float) -> np.ndarray:
    """Parts back to back with ``gap`` seconds of silence between them."""
    if len(parts) == 1:
        return parts[0]
    silence = np.zeros(round(gap * SAMPLE_RATE), dtype=np.float32)
    pieces = [p for part in parts for p in (part, silence)][:-1]
    return np.concatenate(pieces).astype(np.float32, copy=False)


def spans(durations: list[float], gap: float) -> list[tuple[float, float]]:
    """Start and end second of each part of a window joined by :func:`join_audio`."""
    out, start = [], 0.0
    for d in durations:
        out.append((start, start + d))
        start += d + gap
    return out


def join_texts(texts: list[str]) -> str:
    """Texts in order, with no separator (a space changes Whisper's BPE tokens of Chinese text), but a
    space between two Latin letters or digits, which would otherwise merge into one word."""
    out = ""
    for t in texts:
        if out and t and out[-1].isascii() and out[-1].isalnum() and t[0].isascii() and t[0].isalnum():
            out += " "
        out += t
    return out


def join_meta(metas: list[dict]) -> dict:
    """One window's metadata from its cuts' (``cut_meta``): ids joined with '+', texts joined (and kept apart
    in "parts"), the variety when all agree (else "mixed"), translations joined when every cut has one."""
    if len(metas) == 1:
        return {**metas[0], "parts": [metas[0]["text"]]}
    dialects = {m["dialect"] for m in metas}
    translations = [m["translation"] for m in metas]
    return {"id": "+".join(m["id"] for m in metas), "text": join_texts([m["text"] for m in metas]),
            "parts": [m["text"] for m in metas],
            "dialect": dialects.pop() if len(dialects) == 1 else "mixed",
            "translation": join_texts(translations) if all(translations) else None}


def pack_in_order(durations: list[float], window: float, gap: float) -> list[list[int]]:
    """Consecutive parts (by index) grouped into windows of at most ``window`` seconds, ``gap`` seconds apart,
    in their order: how a recording's speech segments, or an evaluation set's utterances, are read in the
    packed format training used. A part longer than the window is an error naming it."""
    windows: list[list[int]] = []
    used = 0.0
    for i, d in enumerate(durations):
        if d > window + 1e-6:
            raise ValueError(f"part {i} of {d:.2f} s does not fit a {window:g}-s window")
        if windows and used + gap + d <= window + 1e-6:
            windows[-1].append(i)
            used += gap + d
        else:
            windows.append([i])
            used = d
    return windows
