"""Batches for training and inference: lhotse samplers over lazily read cuts, mono 16 kHz audio (or
precomputed features), token ids, and items that could not be read, reported instead of raised."""

from __future__ import annotations

import logging
import os
import random
import warnings
from dataclasses import dataclass, field
from itertools import islice
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
import torch
from lhotse import CutSet, set_audio_duration_mismatch_tolerance
from lhotse.cut import Cut
from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler
from lhotse.dataset.sampling.base import TimeConstraint
from lhotse.utils import compute_num_samples, streaming_shuffle

from speechalign.data.audio import quiet_id3
from speechalign.data.features import EncoderFrontend, FrontendConfig, valid_frames
from speechalign.data.manifest import cut_meta, open_cuts
from speechalign.data.packing import WindowPacker, fit_length, join_audio, join_meta, spans
from speechalign.data.parallel import ParallelGroups
from speechalign.text import CharTokenizer

log = logging.getLogger("speechalign.data")
SAMPLE_RATE = 16000
# Decoders disagree on MP3 lengths by a few frames; a larger gap means a truncated or mislabelled file.
# lhotse would otherwise pad or trim files up to 0.5 s off their declared length without a word.
LENGTH_TOLERANCE = 0.1


def _strict_lengths() -> None:
    # The setter logs through the root logger, which would install a default handler at import time
    # and silence the CLI's logging set-up; a NullHandler keeps the root unconfigured meanwhile. What it
    # logs ("the user overrided tolerance", at INFO) is our own setting, no news in a user's log.
    root, null, disabled = logging.getLogger(), logging.NullHandler(), logging.root.manager.disable
    root.addHandler(null)
    logging.disable(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # lhotse warns that transforms may drift; ours drift by a sample
            set_audio_duration_mismatch_tolerance(LENGTH_TOLERANCE)
    finally:
        logging.disable(disabled)
        root.removeHandler(null)


_strict_lengths()


@dataclass
class BadItem:
    """A cut whose audio could not be used, with the file and the reason."""

    cut_id: str
    path: str
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.reason} (cut {self.cut_id})"


@dataclass
class Batch:
    wav: torch.Tensor          # (B, N) float32 waveforms, or (B, T, F) precomputed features; zero padded
    wav_lens: torch.Tensor     # (B,) samples, or frames for features
    targets: list[list[int]]   # token ids per utterance (empty without a tokenizer)
    ids: list[str]
    dialects: list[str]
    texts: list[str]
    seconds: float = 0.0       # audio duration of the usable items
    bad: list[BadItem] = field(default_factory=list)
    translations: list[str | None] = field(default_factory=list)   # Mandarin sentence per item, or None
    parts: list[list[str]] = field(default_factory=list)   # a packed window's texts one by one (else [text])
    # per item, the (start, end) second of each part when its target carries timestamp tokens, else None
    spans: list[list[tuple[float, float]] | None] = field(default_factory=list)
    # per item, each part's (start, end) second, sentence_id (or None) and variety: what model.align pools
    part_spans: list[list[tuple[float, float]]] = field(default_factory=list)
    part_sentences: list[list[str | None]] = field(default_factory=list)
    part_dialects: list[list[str]] = field(default_factory=list)

    def to(self, device) -> "Batch":
        self.wav, self.wav_lens = self.wav.to(device), self.wav_lens.to(device)
        return self


def collate_audio(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad 1-D waveforms to (B, N), or 2-D (T, F) feature matrices to (B, T, F)."""
    lens = torch.tensor([len(a) for a in arrays], dtype=torch.long)
    tail = arrays[0].shape[1:] if arrays else ()
    wav = torch.zeros(len(arrays), int(lens.max()) if len(arrays) else 0, *tail)
    for i, a in enumerate(arrays):
        wav[i, : len(a)] = torch.from_numpy(a)
    return wav, lens


def source_path(cut: Cut) -> str:
    """The file (or URL) a cut's audio or features come from, for error messages."""
    try:
        if cut.has_features and not cut.has_recording:
            return str(cut.features.storage_path)
        return str(cut.recording.sources[0].source)
    except (AttributeError, IndexError):
        return f"<cut {cut.id}: no audio source>"


def read_item(cut: Cut, min_samples: int = 1, frontend: "FrontendConfig | None" = None,
              precomputed: bool = False) -> np.ndarray:
    """A cut's 16 kHz mono waveform, checked: the file must exist, decode, hold finite samples, be long
    enough for the encoder's front end and match the declared duration. With ``frontend``, that front
    end's (T, F) features instead: read from the manifest's storage when ``precomputed``, else computed
    here. Raises ``ValueError`` with the reason (not the library's traceback)."""
    if frontend is not None and precomputed:
        return _read_features(cut, frontend.kind, min_samples)
    audio = _read_audio(cut, min_samples)
    return EncoderFrontend.shared(frontend).valid_features(audio) if frontend is not None else audio


def _read_audio(cut: Cut, min_samples: int) -> np.ndarray:
    if cut.sampling_rate != SAMPLE_RATE:
        cut = cut.resample(SAMPLE_RATE)
    path = source_path(cut)
    if "://" not in path and not path.startswith("<") and cut.recording.sources[0].type == "file" \
            and not os.path.exists(path):
        raise ValueError("audio file not found")
    rec = cut.recording
    whole = cut.start == 0 and abs(cut.duration - rec.duration) < 1e-3
    try:
        # A whole-file cut is read without a duration, so lhotse checks the file is neither shorter nor
        # longer than declared; a segment is checked for being cut short only.
        with quiet_id3(path):
            audio = rec.load_audio(channels=cut.channel) if whole else cut.load_audio()
    except Exception as e:  # soundfile, audioread, ffmpeg and lhotse all raise their own types
        if "declared samples" in str(e):
            raise ValueError(f"audio is {_file_seconds(path)}, the manifest declares {rec.duration:.2f} s") from None
        raise ValueError(f"cannot decode audio ({e.__class__.__name__}: {str(e).splitlines()[0][:200]})") from None
    if audio.ndim == 2:
        audio = audio.mean(axis=0) if audio.shape[0] > 1 else audio[0]
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    expected = compute_num_samples(cut.duration, SAMPLE_RATE)
    if abs(len(audio) - expected) > LENGTH_TOLERANCE * SAMPLE_RATE:
        raise ValueError(f"audio is {len(audio) / SAMPLE_RATE:.2f} s, the manifest declares {cut.duration:.2f} s")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or inf samples")
    if len(audio) < min_samples:
        raise ValueError(f"audio of {len(audio) / SAMPLE_RATE:.3f} s is shorter than the encoder's minimum "
                         f"{min_samples / SAMPLE_RATE:.3f} s")
    return audio


def _file_seconds(path: str) -> str:
    try:
        with quiet_id3(path):
            return f"{sf.info(path).duration:.2f} s"
    except Exception:  # not a soundfile-readable format: the length is unknown here
        return "of another length"


def _read_features(cut: Cut, kind: str, min_samples: int) -> np.ndarray:
    if not cut.has_features:
        raise ValueError("no precomputed features in the manifest (speechalign compute-features)")
    samples = compute_num_samples(cut.duration, SAMPLE_RATE)
    if samples < min_samples:
        raise ValueError(f"audio of {cut.duration:.3f} s is shorter than the encoder's minimum "
                         f"{min_samples / SAMPLE_RATE:.3f} s")
    try:
        feats = cut.load_features()
    except Exception as e:  # lhotse storage backends raise their own types
        raise ValueError(f"unreadable features ({e.__class__.__name__}: {str(e).splitlines()[0][:200]})") from None
    if not np.isfinite(feats).all():
        raise ValueError("features contain NaN or inf")
    return np.ascontiguousarray(feats[: valid_frames(samples, kind)], dtype=np.float32)


class SpeechDataset(torch.utils.data.Dataset):
    """Maps a CutSet chosen by a lhotse sampler to a :class:`Batch`. Runs in DataLoader workers, so
    decoding, resampling and feature loading overlap the training step. A cut that cannot be read is
    left out of its batch (or its packed window) and reported in ``Batch.bad``; the caller decides to
    count it or fail. With a ``packer`` each batch item is a window of several cuts (data.pack)."""

    def __init__(self, tokenizer: CharTokenizer | None = None, min_samples: int = 1,
                 frontend: FrontendConfig | None = None, precomputed: bool = False,
                 packer: WindowPacker | None = None):
        self.tokenizer = tokenizer
        self.min_samples = min_samples
        self.frontend, self.precomputed = frontend, precomputed
        self.packer = packer

    def __getitem__(self, cuts: CutSet) -> Batch:
        if self.packer is not None:
            groups = [(w.cuts, w.timestamps) for w in self.packer.plan(list(cuts))]
        else:
            groups = [([cut], False) for cut in cuts.sort_by_duration(ascending=False)]
        arrays, metas, timed, bad, seconds = [], [], [], [], 0.0
        part_spans, part_sentences, part_dialects = [], [], []
        for group, timestamps in groups:
            parts, part_metas = [], []
            for cut in group:
                try:
                    parts.append(read_item(cut, self.min_samples, self.frontend, self.precomputed))
                except ValueError as e:
                    bad.append(BadItem(cut.id, source_path(cut), str(e)))
                    continue
                part_metas.append(cut_meta(cut))
                seconds += cut.duration
            if not parts:
                continue
            if self.packer is not None:
                parts = [fit_length(a, m["duration"]) for a, m in zip(parts, part_metas)]
            gap = self.packer.gap if self.packer else 0.0
            arrays.append(join_audio(parts, gap))
            metas.append(join_meta(part_metas))
            where = spans([m["duration"] for m in part_metas], gap)
            timed.append(where if timestamps else None)
            part_spans.append(where)
            part_sentences.append([m["sentence_id"] for m in part_metas])
            part_dialects.append([m["dialect"] for m in part_metas])
        wav, lens = collate_audio(arrays)
        texts = [m["text"] for m in metas]
        targets = [self.tokenizer.encode(t) for t in texts] if self.tokenizer else [[] for _ in texts]
        return Batch(wav, lens, targets, [m["id"] for m in metas], [m["dialect"] for m in metas], texts,
                     seconds, bad, [m["translation"] for m in metas], [m["parts"] for m in metas], timed,
                     part_spans, part_sentences, part_dialects)


class UsableForTraining:
    """Keeps cuts the trainer can use; ``reason`` says why another one is not (a picklable predicate,
    so lazy filtered CutSets survive being sent to processes)."""

    def __init__(self, min_duration: float, max_duration: float, frame_shift: float):
        self.min_duration, self.max_duration, self.frame_shift = min_duration, max_duration, frame_shift

    def reason(self, cut: Cut) -> str | None:
        text = cut_meta(cut)["text"]
        if not text:
            return "empty text"
        if cut.duration < self.min_duration:
            return f"shorter than {self.min_duration}s"
        if cut.duration > self.max_duration:
            return f"longer than {self.max_duration}s"
        if len(text) > cut.duration / self.frame_shift:
            return "more characters than encoder frames (CTC cannot align)"
        return None

    def __call__(self, cut: Cut) -> bool:
        return self.reason(cut) is None


def corpus_cuts(corpus, metadata_only: bool = False) -> CutSet:
    """One configured training corpus as a lazy CutSet: jsonl manifests, or a lhotse Shar directory
    (``metadata_only`` reads just its cut manifests, not the audio tars)."""
    if corpus.shar:
        from speechalign.data.shar import open_shar

        return open_shar(corpus.shar, metadata_only=metadata_only)
    return open_cuts(*corpus.cuts)


def train_cuts(corpora, seed: int, metadata_only: bool = False) -> CutSet:
    """One lazy CutSet from several corpora; with more than one, lhotse's lazy mux mixes them by weight."""
    sets = [corpus_cuts(c, metadata_only) for c in corpora]
    if not sets:
        raise ValueError("data.train: no training corpora configured")
    if len(sets) == 1:
        return sets[0]
    return CutSet.mux(*sets, weights=[c.weight for c in corpora], seed=seed)


class OfVariety:
    """Keeps the cuts of one variety (a picklable predicate)."""

    def __init__(self, variety: str):
        self.variety = variety

    def __call__(self, cut: Cut) -> bool:
        return cut_meta(cut)["dialect"] == self.variety


class CopyId:
    """Renames a cut to its ``k``-th oversampled copy, so ids stay unique."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, cut: Cut) -> Cut:
        return cut.with_id(f"{cut.id}#copy{self.k}")


def oversampled(cuts: CutSet, times: dict[str, int]) -> CutSet:
    """``cuts`` plus ``times[v] - 1`` renamed copies of variety v's cuts (data.oversample); the training
    sampler's shuffle buffer mixes them in."""
    out = cuts
    for variety, n in sorted(times.items()):
        for k in range(1, n):
            out = out + cuts.filter(OfVariety(variety)).map(CopyId(k))
    return out


class PackedCutSampler(DynamicCutSampler):
    """lhotse's dynamic sampler with batches of ``max_duration`` seconds of audio, not of padded audio
    (``TimeConstraint(concatenate_cuts=True)``): packed cuts carry no padding. lhotse cannot checkpoint a
    custom constraint in general; this one is rebuilt from ``max_duration``, so the state is the rest."""

    def __init__(self, cuts, max_duration: float, **kwargs):
        super().__init__(cuts, constraint=TimeConstraint(max_duration=max_duration, concatenate_cuts=True), **kwargs)

    def state_dict(self) -> dict:
        constraint, self.constraint = self.constraint, None
        try:
            return super().state_dict()
        finally:
            self.constraint = constraint


class VarietyRuns:
    """The training stream shuffled per epoch (as lhotse's samplers shuffle it) and reordered into runs of one
    variety, each closed by the cut that takes it past ``seconds``: the rule by which lhotse closes a packed
    batch, so a sampler of ``max_duration=seconds`` reading this stream yields one run per batch. The partial runs
    left at the end of an epoch come last, one variety after another."""

    def __init__(self, cuts: CutSet, seconds: float, seed: int, buffer_size: int):
        self.cuts, self.seconds, self.seed, self.buffer_size = cuts, seconds, seed, buffer_size
        self.epoch = 0

    def __iter__(self) -> Iterator[Cut]:
        runs: dict[str, list[Cut]] = {}
        totals: dict[str, float] = {}
        for cut in streaming_shuffle(iter(self.cuts), bufsize=self.buffer_size,
                                     rng=random.Random(self.seed + self.epoch)):
            variety = cut_meta(cut)["dialect"]
            runs.setdefault(variety, []).append(cut)
            totals[variety] = totals.get(variety, 0.0) + cut.duration
            if totals[variety] > self.seconds:
                yield from runs.pop(variety)
                del totals[variety]
        for run in runs.values():
            yield from run


class VarietyRunSampler(PackedCutSampler):
    """Packed batches of one variety each (``data.pack.group=variety``): windows of one variety are then as
    full as mixed ones. A mixed shuffle would leave each variety a few seconds per batch, and a batch of ten
    varieties ten sparse windows (measured: about 24 s per step against 8.8). Resume replays the epoch's batches
    from the same seed, as lhotse's samplers do."""

    def __init__(self, cuts, max_duration: float, seed: int, shuffle_buffer_size: int, **kwargs):
        self.runs = VarietyRuns(cuts, max_duration, seed, shuffle_buffer_size)
        super().__init__(CutSet(self.runs), max_duration, shuffle=False, seed=seed,
                         shuffle_buffer_size=shuffle_buffer_size, **kwargs)

    def __iter__(self) -> "VarietyRunSampler":
        self.runs.epoch = self.epoch
        return super().__iter__()


class ParallelSampler(PackedCutSampler):
    """Batches of ``max_duration`` seconds from a stream in which k varieties of a sentence come together
    (``data.parallel``, :class:`ParallelGroups`), so that the group mostly shares a batch. Packed (``packed``:
    the batch counts audio, not padding) or not; resume replays the epoch's batches from the same seed."""

    def __init__(self, cuts, max_duration: float, k: int, seed: int, shuffle_buffer_size: int, packed: bool,
                 **kwargs):
        self.groups = ParallelGroups(cuts, k, seed, shuffle_buffer_size)
        super().__init__(CutSet(self.groups), max_duration, shuffle=False, seed=seed,
                         shuffle_buffer_size=shuffle_buffer_size, **kwargs)
        if not packed:   # lhotse's own constraint: the padded duration
            self.constraint, self.max_duration = None, max_duration

    def __iter__(self) -> "ParallelSampler":
        self.groups.epoch = self.epoch
        return super().__iter__()


def train_sampler(cuts: CutSet, max_duration: float, num_buckets: int, shuffle: bool, seed: int,
                  world_size: int = 1, rank: int = 0, buffer_size: int = 10000, pack: str | None = None,
                  parallel: int = 0) -> DynamicBucketingSampler | DynamicCutSampler:
    """Bucketing over a lazy CutSet: only ``buffer_size`` cuts are held in memory at a time. One bucket, or
    packed windows (``pack``: their ``data.pack.group``, "mixed" or "variety"), is a plain shuffle buffer. lhotse
    counts a batch's duration with its padding (the longest cut times their number); packed cuts are not padded,
    so their batch counts the sum of their durations. With ``pack="variety"`` (shuffled) every batch holds one
    variety (:class:`VarietyRunSampler`); with ``parallel=k`` (shuffled) k varieties of a sentence come
    together (:class:`ParallelSampler`, no buckets)."""
    if pack not in (None, "mixed", "variety"):
        raise ValueError(f"pack: expected None, 'mixed' or 'variety', got {pack!r}")
    if parallel and shuffle:
        if pack == "variety":
            raise ValueError("data.parallel: a batch of one variety holds no parallel pair; use data.pack.group=mixed")
        return ParallelSampler(cuts, max_duration, parallel, seed, buffer_size, packed=pack is not None,
                               drop_last=True, world_size=world_size, rank=rank)
    if pack == "variety" and shuffle:
        return VarietyRunSampler(cuts, max_duration, seed, buffer_size, drop_last=True, world_size=world_size,
                                 rank=rank)
    if pack:
        return PackedCutSampler(cuts, max_duration, shuffle=shuffle, drop_last=True, seed=seed,
                                world_size=world_size, rank=rank, shuffle_buffer_size=buffer_size)
    if num_buckets <= 1:
        return DynamicCutSampler(cuts, max_duration=max_duration, shuffle=shuffle, drop_last=True, seed=seed,
                                 world_size=world_size, rank=rank, shuffle_buffer_size=buffer_size)
    return DynamicBucketingSampler(cuts, max_duration=max_duration, num_buckets=num_buckets, shuffle=shuffle,
                                   drop_last=True, seed=seed, world_size=world_size, rank=rank,
                                   buffer_size=buffer_size, num_cuts_for_bins_estimate=buffer_size)


def windowed_batches(cuts: Iterable[Cut], max_duration: float | None, max_cuts: int | None = None,
                     window: int = 2000) -> Iterator[CutSet]:
    """Deterministic batches of similar length from a stream of cuts: each window of ``window`` cuts is
    sorted longest first and cut into batches of at most ``max_duration`` seconds (or ``max_cuts``), so
    memory is bounded by the window, not the corpus."""
    it = iter(cuts)
    while chunk := list(islice(it, window)):
        chunk.sort(key=lambda c: c.duration, reverse=True)
        batch, total = [], 0.0
        for cut in chunk:
            full = (max_duration is not None and total + cut.duration > max_duration) or \
                   (max_cuts is not None and len(batch) >= max_cuts)
            if batch and full:
                yield CutSet.from_cuts(batch)
                batch, total = [], 0.0
            batch.append(cut)
            total += cut.duration
        if batch:
            yield CutSet.from_cuts(batch)


def default_num_workers(device_type: str) -> int:
    """Loader processes per training process: on a GPU most cores can feed it; on CPU the step itself
    needs the cores, so one worker overlaps reading with compute."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device_type == "cuda":
        per_gpu = cores // max(torch.cuda.device_count(), 1)
        return max(1, min(8, per_gpu - 1))
    return 1 if cores >= 2 else 0


def make_loader(dataset: SpeechDataset, sampler, num_workers: int, prefetch_factor: int = 2,
                generator: torch.Generator | None = None) -> torch.utils.data.DataLoader:
    """lhotse's recommended layout: the sampler (and its checkpointed state) stays in this process;
    workers receive CutSets and do the reading and feature work."""
    extra = {"prefetch_factor": prefetch_factor, "persistent_workers": False} if num_workers > 0 else {}
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                                       generator=generator, **extra)


def eval_loader(cuts: Iterable[Cut], max_duration: float | None, tokenizer: CharTokenizer | None = None,
                max_cuts: int | None = None, num_workers: int = 0, min_samples: int = 1,
                frontend: FrontendConfig | None = None, precomputed: bool = False) -> torch.utils.data.DataLoader:
    """Deterministic batches of similar length for validation, decoding and embedding (streamed)."""
    batches = windowed_batches(cuts, max_duration, max_cuts)
    return make_loader(SpeechDataset(tokenizer, min_samples, frontend, precomputed), batches, num_workers)
