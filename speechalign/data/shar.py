"""Lhotse Shar: manifests with their audio (or features) in sequential tar shards, for network storage
and many nodes, where each process streams whole shards instead of opening one file per utterance."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from lhotse import CutSet

from speechalign.data.manifest import ManifestError, open_cuts

log = logging.getLogger("speechalign.data")


def export_shar(cuts_paths: list[str | Path], out_dir: str | Path, shard_size: int = 1000,
                features: bool = False, audio_format: str = "flac", num_jobs: int = 1) -> Path:
    """Write ``cuts.*.jsonl.gz`` plus ``recording.*.tar`` (or ``features.*.tar``) shards with lhotse's
    ``to_shar``; written into a temporary directory renamed into place, so a crash leaves no half set."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: already exists; remove it or choose another --out")
    cuts = open_cuts(*cuts_paths)
    if features:
        fields = {"features": "lilcom"}
    else:
        fields = {"recording": audio_format}
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cuts.to_shar(tmp, fields=fields, shard_size=shard_size, num_jobs=num_jobs, verbose=True,
                 fault_tolerant=False)
    os.replace(tmp, out_dir)
    log.info("wrote Shar shards of %s to %s", ", ".join(map(str, cuts_paths)), out_dir)
    return out_dir


def open_shar(shar_dir: str | Path, metadata_only: bool = False) -> CutSet:
    """A lazy CutSet over a Shar directory. Shards keep their written order so a resumed run replays the
    same stream (the sampler shuffles within its buffer); ``metadata_only`` skips the data tars."""
    shar_dir = Path(shar_dir)
    cut_files = sorted(shar_dir.glob("cuts.*.jsonl*"))
    if not cut_files:
        raise ManifestError(f"{shar_dir}: not a Shar directory (no cuts.*.jsonl.gz shards)")
    if metadata_only:
        return open_cuts(*cut_files)
    return CutSet.from_shar(in_dir=shar_dir, shuffle_shards=False)
