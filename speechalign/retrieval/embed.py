"""``speechalign embed``: per-layer utterance embeddings (pooled, optionally frame states) on disk.

Embedding directory::

    info.yaml                 source, layers, pooling modes, dims, shard size, number of utterances
    meta.tsv                  one row per utterance: id, dialect, site, subgroup, sentence_id, frames
    shards/shard-00000.npz    pooled_<mode>_L<layer> (n x D float32), frames_L<layer> (sum T x D float16),
                              lengths (n,) — written atomically; finished shards are skipped on rerun
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from speechalign.config import objective
from speechalign.data.dataset import SpeechDataset, windowed_batches
from speechalign.data.manifest import DuplicateIds, check_unique_ids, cut_meta, open_cuts
from speechalign.models.encoders import POOLING, pool, whisper_frames

log = logging.getLogger("speechalign.retrieval")
META_FIELDS = ("id", "dialect", "site", "subgroup", "sentence_id", "frames")


class FeatureBaseline(torch.nn.Module):
    """Acoustic features as a one-'layer' encoder: 80-dim log fbank or 40-dim MFCC (the reference's options)."""

    def __init__(self, kind: str):
        super().__init__()
        import torchaudio

        if kind == "fbank":
            self.transform = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, win_length=400, hop_length=160,
                                                                  n_mels=80, center=False)
        elif kind == "mfcc":
            self.transform = torchaudio.transforms.MFCC(16000, n_mfcc=40, melkwargs={
                "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 40, "center": False})
        else:
            raise ValueError(f"unknown feature baseline {kind!r}; use fbank or mfcc")
        self.kind = kind
        self.num_layers = 0
        self.dim = 80 if kind == "fbank" else 40

    def forward(self, wav, wav_lens):
        from speechalign.models.encoders import EncoderOutput

        if wav.shape[1] < 512:
            wav = torch.nn.functional.pad(wav, (0, 512 - wav.shape[1]))
        feats = self.transform(wav).transpose(1, 2)
        if self.kind == "fbank":
            feats = (feats + 1e-6).log()
        lens = (torch.div(wav_lens - 512, 160, rounding_mode="floor") + 1).clamp(min=1)
        return EncoderOutput([feats], lens)


def build_source(exp_dir=None, encoder_dir=None, features=None, checkpoint="latest", random_init=False, seed=0,
                 length_mode=None):
    """The encoder to embed with, and a description recorded in info.yaml."""
    given = [x for x in (exp_dir, encoder_dir, features) if x]
    if len(given) != 1:
        raise ValueError("embed: give exactly one of --exp-dir, --encoder-dir or --features")
    if length_mode and features:
        raise ValueError("embed: --length-mode applies to Whisper encoders, not to --features")
    torch.manual_seed(seed)
    if features:
        return FeatureBaseline(features), {"features": features}
    if exp_dir:
        return _experiment_encoder(Path(exp_dir), checkpoint, random_init, seed, length_mode)
    info = {"encoder_dir": str(encoder_dir), "random_init": random_init}
    if length_mode:
        info["length_mode"] = length_mode
    encoder = _encoder_from_dir(Path(encoder_dir), random_init, length_mode)
    info["model_type"] = encoder.hf_config.model_type
    return encoder, info


def _experiment_encoder(exp_dir: Path, checkpoint: str, random_init: bool, seed: int, length_mode: str | None):
    """An experiment's encoder reads its input as it was trained (the config's whisper.length_mode), unless
    ``length_mode`` asks for the other format: a read-out probe, recorded beside the trained mode."""
    from speechalign.models.encoders import build_encoder
    from speechalign.models.experiment import experiment_config, load_experiment

    source = {"exp_dir": str(exp_dir), **({"random_init": True, "seed": seed} if random_init
                                          else {"checkpoint": checkpoint})}
    trained_cfg = experiment_config(exp_dir)
    if not random_init:
        source["objective"] = objective(trained_cfg)   # "ASR-only", or what else the encoder learned
    overrides = []
    if trained_cfg.model.encoder == "whisper":
        trained = trained_cfg.model.whisper.length_mode
        source["length_mode"] = length_mode or trained
        if length_mode and length_mode != trained:
            source["trained_length_mode"] = trained
            overrides = [f"model.whisper.length_mode={length_mode}"]
    elif length_mode:
        raise ValueError(f"embed: --length-mode applies to Whisper encoders; {exp_dir} has a "
                         f"{trained_cfg.model.encoder} encoder")
    try:
        if random_init:
            hf = exp_dir / "encoder_config.json"
            encoder = build_encoder(experiment_config(exp_dir, overrides), hf if hf.is_file() else None)
        else:
            encoder = load_experiment(exp_dir, checkpoint, overrides=overrides)[2].encoder
    except ValueError as e:
        if not overrides:
            raise
        raise ValueError(f"embed: --length-mode {length_mode} cannot read {exp_dir}: {e}") from None
    return encoder.eval(), source


def _encoder_from_dir(path: Path, random_init: bool, length_mode: str | None = None):
    """Any transformers speech encoder (a directory or a hub id), through the one adapter every family shares."""
    from speechalign.models.encoders import load_speech_encoder

    return load_speech_encoder(str(path), random_init, length_mode).eval()


def _atomic_npz(path: Path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _shard_done(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return "lengths" in z.files and "ids" in z.files
    except (OSError, ValueError, EOFError):
        return False


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """``all`` or comma-separated indices (0 = input embedding, num_layers = top); negative from the top."""
    valid = list(range(num_layers + 1))
    if spec == "all":
        return valid
    layers = []
    for part in spec.split(","):
        i = int(part)
        i = i + num_layers + 1 if i < 0 else i
        if i not in valid:
            raise ValueError(f"layer {part} out of range; valid layers are 0..{num_layers} (or 'all', or -1 for the top)")
        layers.append(i)
    return layers


@torch.no_grad()
def embed(cuts_paths: list[str | Path], out_dir: str | Path, encoder, source: dict, layers: str = "all",
          pooling: tuple[str, ...] = ("mean",), frames: bool = False, shard_size: int = 256,
          max_duration: float = 120.0, device: str = "cpu", skip_bad: bool = False,
          pack_gap: float | None = None) -> Path:
    """Stream the manifests shard by shard (memory bounded by one shard). An unreadable utterance is an
    error naming its file, or with ``skip_bad`` left out of the embeddings, counted and listed.
    ``pack_gap``: a Whisper encoder that reads 30-s windows (pad30) reads several utterances per window,
    ``pack_gap`` seconds apart, as packed training did; each utterance pools its own frames."""
    from speechalign.decode.run import check_bad

    out_dir = Path(out_dir)
    (out_dir / "shards").mkdir(parents=True, exist_ok=True)
    for p in pooling:
        if p not in POOLING:
            raise ValueError(f"unknown pooling {p!r}; choose from {POOLING}")
    chosen = parse_layers(layers, encoder.num_layers)
    if pack_gap is not None and getattr(encoder, "length_mode", None) != "pad30":
        raise ValueError("embed --pack: only a Whisper encoder read in 30-s windows (length mode pad30) packs "
                         "utterances; this encoder reads each one alone")
    # Retrieval keys on cut ids: a repeated one would make a query its own ambiguous gallery item.
    check_unique_ids(*cuts_paths)
    encoder.to(device)
    dataset = SpeechDataset(min_samples=getattr(encoder, "min_samples", 1))
    cuts = iter(open_cuts(*cuts_paths))
    rows, dims, skipped, num_shards = [], {}, [], 0
    bar = tqdm(desc="embed", unit="utt")
    while shard := list(islice(cuts, shard_size)):
        path = out_dir / "shards" / f"shard-{num_shards:05d}.npz"
        if not _shard_done(path):
            arrays, bad = _embed_shard(encoder, dataset, shard, chosen, pooling, frames, max_duration, device,
                                       pack_gap)
            skipped += check_bad(bad, skip_bad, "embed")
            _atomic_npz(path, arrays)
        with np.load(path, allow_pickle=False) as z:
            ids, lengths = z["ids"].tolist(), z["lengths"]
            dims = {L: int(z[f"pooled_{pooling[0]}_L{L}"].shape[1]) for L in chosen}
        by_id = {c.id: c for c in shard}
        for cut_id, n in zip(ids, lengths):
            m = cut_meta(by_id[cut_id])
            rows.append([m["id"], m["dialect"], m["site"] or "", m["subgroup"] or "", m["sentence_id"] or "", int(n)])
        num_shards += 1
        bar.update(len(shard))
    bar.close()
    if not rows:
        raise ValueError(f"embed: {', '.join(map(str, cuts_paths))} hold no usable cuts")
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(META_FIELDS)
    writer.writerows(rows)
    (out_dir / ".meta.tsv.tmp").write_text(buf.getvalue(), encoding="utf-8")
    os.replace(out_dir / ".meta.tsv.tmp", out_dir / "meta.tsv")
    info = {"source": source, "layers": chosen, "pooling": list(pooling), "frames": frames, "dims": dims,
            "num_utterances": len(rows), "num_shards": num_shards, "shard_size": shard_size,
            "cuts": [str(p) for p in cuts_paths], "skipped": skipped,
            "packed": None if pack_gap is None else f"30-s windows, {pack_gap:g}-s gaps"}
    (out_dir / ".info.yaml.tmp").write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(out_dir / ".info.yaml.tmp", out_dir / "info.yaml")
    if skipped:
        log.warning("embed: skipped %d unreadable utterance(s) (listed in info.yaml)", len(skipped))
    log.info("embedded %d utterances, layers %s -> %s", len(rows), chosen, out_dir)
    return out_dir


def _embed_shard(encoder, dataset, shard, layers, pooling, frames, max_duration, device,
                 pack_gap: float | None = None) -> tuple[dict, list]:
    """Arrays of the shard's readable utterances (in shard order, ids stored alongside) and the bad ones."""
    pooled = {(p, L): {} for p in pooling for L in layers}
    frame_store = {L: {} for L in layers}
    lengths, bad = {}, []
    for cuts in windowed_batches(shard, max_duration, window=len(shard)):
        batch = dataset[cuts]
        bad += batch.bad
        if not batch.ids:
            continue
        wav, wav_lens = batch.wav.to(device), batch.wav_lens.to(device)
        if pack_gap is None:
            out = encoder(wav, wav_lens)
            states = {L: out.hidden_states[L].float() for L in layers}
            speech = out.speech_lengths
        else:
            states, speech = _packed_states(encoder, wav, wav_lens, layers, pack_gap)
        for L in layers:
            if not torch.isfinite(states[L]).all():
                nonfinite = [batch.ids[b] for b in range(len(batch.ids)) if not torch.isfinite(states[L][b]).all()]
                raise ValueError(f"embed: non-finite states at layer {L} for utterance(s) {nonfinite[:5]}")
            for p in pooling:
                vec = pool(states[L], speech, p).cpu().numpy()
                for b, cut_id in enumerate(batch.ids):
                    pooled[(p, L)][cut_id] = vec[b]
            if frames:
                for b, cut_id in enumerate(batch.ids):
                    frame_store[L][cut_id] = states[L][b, : int(speech[b])].cpu().numpy().astype(np.float16)
        for b, cut_id in enumerate(batch.ids):
            lengths[cut_id] = int(speech[b])
    ids = [c.id for c in shard if c.id in lengths]
    arrays = {"ids": np.array(ids, dtype=str), "lengths": np.array([lengths[c] for c in ids], dtype=np.int64)}
    for (p, L), vecs in pooled.items():
        arrays[f"pooled_{p}_L{L}"] = np.stack([vecs[c] for c in ids]).astype(np.float32) if ids else \
            np.zeros((0, encoder.dim), np.float32)
    if frames:
        for L in layers:
            arrays[f"frames_L{L}"] = np.concatenate([frame_store[L][c] for c in ids]) if ids else \
                np.zeros((0, encoder.dim), np.float16)
    return arrays, bad


def _packed_states(encoder, wav: torch.Tensor, wav_lens: torch.Tensor, layers: list[int],
                   gap: float) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Each utterance's own frames, read in 30-s windows packed as training packed them (``gap`` seconds
    apart): per layer (B, T, D) states, zero past each utterance's frames, and (B,) frame counts."""
    from speechalign.data.dataset import collate_audio
    from speechalign.data.packing import join_audio, pack_in_order, spans

    lens = wav_lens.tolist()
    groups = pack_in_order([n / 16000 for n in lens], 30.0, gap)
    windows, window_lens = collate_audio([join_audio([wav[i, : lens[i]].cpu().numpy() for i in g], gap)
                                          for g in groups])
    out = encoder(windows.to(wav.device), window_lens.to(wav.device))
    shift = encoder.frame_shift
    speech = whisper_frames(wav_lens)   # the frames the utterance has when read alone
    most = int(speech.max())
    states = {L: torch.zeros(len(lens), most, out.hidden_states[L].shape[-1], device=wav.device) for L in layers}
    for k, g in enumerate(groups):
        for i, (start, _) in zip(g, spans([lens[i] / 16000 for i in g], gap)):
            first = round(start / shift)
            n = min(int(speech[i]), int(out.speech_lengths[k]) - first)
            speech[i] = n
            for L in layers:
                states[L][i, :n] = out.hidden_states[L][k, first : first + n].float()
    return states, speech


@dataclass
class EmbeddingStore:
    """Read access to an embedding directory."""

    path: Path
    info: dict
    meta: list[dict]

    @classmethod
    def open(cls, path: str | Path) -> "EmbeddingStore":
        path = Path(path)
        if not (path / "info.yaml").is_file():
            raise FileNotFoundError(f"{path}: no info.yaml (not a finished `speechalign embed` output)")
        info = yaml.safe_load((path / "info.yaml").read_text(encoding="utf-8"))
        with open(path / "meta.tsv", encoding="utf-8") as f:
            meta = list(csv.DictReader(f, delimiter="\t"))
        dups = DuplicateIds()
        for m in meta:
            dups.add(m["id"])
        where = path / "meta.tsv"   # line 1 is the header
        if (line := dups.first_repeat((m["id"], (where, f"line {n}")) for n, m in enumerate(meta, 2))) is not None:
            raise ValueError(line)
        return cls(path, info, meta)

    def _check_layer(self, layer: int) -> None:
        if layer not in self.info["layers"]:
            raise ValueError(f"{self.path}: layer {layer} not embedded; valid layers: {self.info['layers']}")

    def _shards(self):
        for k in range(self.info["num_shards"]):
            with np.load(self.path / "shards" / f"shard-{k:05d}.npz", allow_pickle=False) as z:
                yield z

    def pooled(self, layer: int, mode: str = "mean") -> np.ndarray:
        self._check_layer(layer)
        if mode not in self.info["pooling"]:
            raise ValueError(f"{self.path}: pooling {mode!r} not stored; available: {self.info['pooling']}")
        out = np.concatenate([z[f"pooled_{mode}_L{layer}"] for z in self._shards()])
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if len(bad):
            raise ValueError(f"{self.path}: NaN/inf vector at layer {layer} for utterance {self.meta[bad[0]]['id']}")
        return out

    def frames(self, layer: int) -> list[np.ndarray]:
        self._check_layer(layer)
        if not self.info.get("frames"):
            raise ValueError(f"{self.path}: frame states were not stored (rerun embed with --frames)")
        out = []
        for z in self._shards():
            flat, lens = z[f"frames_L{layer}"], z["lengths"]
            out += np.split(flat.astype(np.float32), np.cumsum(lens)[:-1])
        return out
