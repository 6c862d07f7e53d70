"""Batches for training and inference: lhotse samplers over cuts, mono 16 kHz audio, token ids."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler

from speechalign.data.manifest import cut_meta, load_cuts, load_mono
from speechalign.text import CharTokenizer

log = logging.getLogger("speechalign.data")
SAMPLE_RATE = 16000


@dataclass
class Batch:
    wav: torch.Tensor          # (B, N) float32, zero padded
    wav_lens: torch.Tensor     # (B,) samples
    targets: list[list[int]]   # token ids per utterance (empty without a tokenizer)
    ids: list[str]
    dialects: list[str]
    texts: list[str]

    def to(self, device) -> "Batch":
        self.wav, self.wav_lens = self.wav.to(device), self.wav_lens.to(device)
        return self


def collate_audio(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(a) for a in arrays], dtype=torch.long)
    wav = torch.zeros(len(arrays), int(lens.max()) if len(arrays) else 0)
    for i, a in enumerate(arrays):
        wav[i, : len(a)] = torch.from_numpy(a)
    return wav, lens


class SpeechDataset(torch.utils.data.Dataset):
    """Maps a CutSet chosen by a lhotse sampler to a :class:`Batch` (downmixed, resampled to 16 kHz)."""

    def __init__(self, tokenizer: CharTokenizer | None = None):
        self.tokenizer = tokenizer

    def __getitem__(self, cuts: CutSet) -> Batch:
        cuts = cuts.sort_by_duration(ascending=False)
        arrays, metas = [], []
        for cut in cuts:
            if cut.sampling_rate != SAMPLE_RATE:
                cut = cut.resample(SAMPLE_RATE)
            arrays.append(load_mono(cut))
            metas.append(cut_meta(cut))
        wav, lens = collate_audio(arrays)
        texts = [m["text"] for m in metas]
        targets = [self.tokenizer.encode(t) for t in texts] if self.tokenizer else [[] for _ in texts]
        return Batch(wav, lens, targets, [m["id"] for m in metas], [m["dialect"] for m in metas], texts)


def filter_for_training(cuts: CutSet, min_duration: float, max_duration: float,
                        frame_shift: float, name: str = "train") -> CutSet:
    """Drop cuts unusable for training, logging how many and why (never silently)."""
    reasons: Counter[str] = Counter()
    kept = []
    for cut in cuts:
        text = cut_meta(cut)["text"]
        if not text:
            reasons["empty text"] += 1
        elif cut.duration < min_duration:
            reasons[f"shorter than {min_duration}s"] += 1
        elif cut.duration > max_duration:
            reasons[f"longer than {max_duration}s"] += 1
        elif len(text) > cut.duration / frame_shift:
            reasons["more characters than encoder frames (CTC cannot align)"] += 1
        else:
            kept.append(cut)
    if reasons:
        log.warning("%s: filtered %d of %d cuts: %s", name, sum(reasons.values()), len(kept) + sum(reasons.values()),
                    ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
    if not kept:
        raise ValueError(f"{name}: no usable cuts left after filtering ({dict(reasons)})")
    return CutSet.from_cuts(kept)


def train_cuts(corpora, seed: int) -> CutSet:
    """One CutSet from several corpora; with more than one, lhotse's mux mixes them by weight."""
    sets = [load_cuts(*c.cuts) for c in corpora]
    if not sets:
        raise ValueError("data.train: no training corpora configured")
    if len(sets) == 1:
        return sets[0]
    return CutSet.mux(*sets, weights=[c.weight for c in corpora], seed=seed)


def train_sampler(cuts: CutSet, max_duration: float, num_buckets: int, shuffle: bool, seed: int,
                  world_size: int = 1, rank: int = 0) -> DynamicBucketingSampler:
    return DynamicBucketingSampler(cuts, max_duration=max_duration, num_buckets=num_buckets, shuffle=shuffle,
                                   drop_last=True, seed=seed, world_size=world_size, rank=rank)


def eval_loader(cuts: CutSet, max_duration: float | None, tokenizer: CharTokenizer | None = None,
                max_cuts: int | None = None):
    """Deterministic batches of similar length for validation, decoding and embedding."""
    cuts = cuts.sort_by_duration(ascending=False)
    sampler = SimpleCutSampler(cuts, max_duration=max_duration, max_cuts=max_cuts, shuffle=False)
    return torch.utils.data.DataLoader(SpeechDataset(tokenizer), sampler=sampler, batch_size=None, num_workers=0)
