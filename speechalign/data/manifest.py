"""Reading speechalign cut manifests with errors that name the file and line, and cut metadata."""

from __future__ import annotations

import gzip
import hashlib
import json
from array import array
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.serialization import deserialize_item

from speechalign.data.audio import quiet_id3
from speechalign.text import normalize


class ManifestError(ValueError):
    """A manifest file is missing, unreadable or holds a malformed line."""


def iter_cuts(path: str | Path) -> Iterator[Cut]:
    """Stream cuts from a ``.jsonl`` / ``.jsonl.gz`` manifest; a bad line raises naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    item = deserialize_item(json.loads(line))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise ManifestError(f"{path}:{line_no}: not a valid cut ({e.__class__.__name__}: {e})") from None
                if not isinstance(item, Cut):
                    raise ManifestError(f"{path}:{line_no}: expected a cut, found {type(item).__name__}")
                yield item
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ManifestError(f"{path}: cannot read manifest ({e})") from None


class LazyManifests:
    """Re-iterable stream of the cuts of one or more manifests, validated line by line as they are read;
    wrapped in a lazy lhotse ``CutSet``, so memory does not grow with the corpus."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __iter__(self) -> Iterator[Cut]:
        for path in self.paths:
            yield from iter_cuts(path)


def open_cuts(*paths: str | Path) -> CutSet:
    """A lazy CutSet over manifests (a missing file is an error now, a malformed line when it is read)."""
    if not paths:
        raise ManifestError("no manifest given")
    for path in paths:
        if not Path(path).is_file():
            raise ManifestError(f"{path}: manifest not found")
    return CutSet(LazyManifests([Path(p) for p in paths]))


def _id_hash(cut_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(cut_id.encode(), digest_size=8).digest(), "little", signed=True)


class DuplicateIds:
    """Streaming duplicate-id check in 8 bytes per cut: 64-bit hashes are collected and sorted; only a
    repeated hash costs a second look at the ids themselves (and only there are places remembered)."""

    def __init__(self):
        self.hashes = array("q")

    def add(self, cut_id: str) -> None:
        self.hashes.append(_id_hash(cut_id))

    def repeated_hashes(self) -> set[int]:
        h = np.sort(np.frombuffer(self.hashes, dtype=np.int64))
        return set(h[1:][h[1:] == h[:-1]].tolist())

    def repeats(self, items: Iterable[tuple[str, object]]) -> Iterator[tuple[str, object, object]]:
        """Second pass over ``(id, place)`` in the order the ids were added: ``(id, first place, this
        place)`` for each repeated occurrence. Nothing is read unless a hash repeated."""
        suspects = self.repeated_hashes()
        if not suspects:
            return
        first: dict[str, object] = {}
        for cut_id, place in items:
            if _id_hash(cut_id) in suspects:
                if cut_id in first:
                    yield cut_id, first[cut_id], place
                else:
                    first[cut_id] = place

    def find(self, cuts: Iterable[Cut], limit: int = 5) -> list[str]:
        """Up to ``limit`` ids seen more than once (second pass over ``cuts`` only if a hash repeated)."""
        dups: list[str] = []
        for cut_id, _, _ in self.repeats((cut.id, None) for cut in cuts):
            if cut_id not in dups:
                dups.append(cut_id)
                if len(dups) >= limit:
                    break
        return dups

    def first_repeat(self, items: Iterable[tuple[str, tuple[str | Path, str]]]) -> str | None:
        """One line naming the first repeated id and both of its places, ``items`` being ``(id, (file,
        position))`` in add order (e.g. ``(path, "cut #3")``); None when every id is unique."""
        for cut_id, (first_file, first_pos), (file, pos) in self.repeats(items):
            return f"{file}: duplicate cut id {cut_id!r} at {pos} (first seen in {first_file}, {first_pos})"
        return None


def _cut_places(paths) -> Iterator[tuple[str, tuple[str | Path, str]]]:
    for path in paths:
        for n, cut in enumerate(iter_cuts(path), 1):
            yield cut.id, (path, f"cut #{n}")


def refuse_duplicates(paths: Iterable[str | Path], dups: DuplicateIds) -> None:
    """Raise ``ManifestError`` naming both places of a repeated id, ``dups`` holding every id of
    ``paths`` in order (the manifests are read again only if a hash repeated)."""
    paths = list(paths)
    if (line := dups.first_repeat(_cut_places(paths))) is not None:
        raise ManifestError(line)


def check_unique_ids(*paths: str | Path) -> None:
    """One streaming pass over the manifests (metadata only): an id that occurs twice, in one manifest or
    across them, is a ``ManifestError`` naming the file and position of both occurrences."""
    dups = DuplicateIds()
    for path in paths:
        for cut in iter_cuts(path):
            dups.add(cut.id)
    refuse_duplicates(paths, dups)


def load_cuts(*paths: str | Path) -> CutSet:
    """All cuts of one or more manifests, validated line by line, ids checked for duplicates."""
    cuts, seen = [], {}
    for path in paths:
        for n, cut in enumerate(iter_cuts(path), 1):
            if cut.id in seen:
                where, m = seen[cut.id]
                raise ManifestError(f"{path}: duplicate cut id {cut.id!r} at cut #{n} (first seen in {where}, "
                                    f"cut #{m})")
            seen[cut.id] = (path, n)
            cuts.append(cut)
    return CutSet.from_cuts(cuts)


def split_name(path: str | Path) -> str:
    """``kespeech_cuts_dev_phase1.jsonl.gz`` -> ``dev_phase1``; other names -> their stem."""
    name = Path(path).name.split(".")[0]
    return name.split("_cuts_", 1)[1] if "_cuts_" in name else name


def cut_meta(cut: Cut) -> dict:
    """Dialect label, text and protocol fields of a cut (from its first supervision)."""
    sup = cut.supervisions[0] if cut.supervisions else None
    custom = (sup.custom if sup else None) or {}
    return {
        "id": cut.id,
        "dialect": (sup.language if sup else None) or "unknown",
        "text": (sup.text if sup else "") or "",
        "speaker": sup.speaker if sup else None,
        "sentence_id": custom.get("sentence_id"),
        "site": custom.get("site"),
        "subgroup": custom.get("subgroup"),
        "duration": cut.duration,
        "translation": mandarin_reference(sup.language if sup else None, (sup.text if sup else "") or "",
                                          custom.get("translation")),
    }


MANDARIN_LABELS = ("Mandarin", "Taiwan Mandarin")


def mandarin_reference(dialect: str | None, text: str, translation: str | None) -> str | None:
    """The Mandarin sentence a cut means: its normalized translation, or its own text when it is Mandarin
    speech without one; None when neither exists (a dialect cut without a translation)."""
    if translation:
        return normalize(translation) or None
    return text or None if dialect in MANDARIN_LABELS else None


def load_mono(cut: Cut) -> np.ndarray:
    """The cut's audio as float32 mono at the cut's sampling rate (multi-channel is averaged)."""
    source = cut.recording.sources[0].source if cut.has_recording and cut.recording.sources else ""
    with quiet_id3(str(source)):
        audio = cut.load_audio()
    if audio.ndim == 2:
        audio = audio.mean(axis=0) if audio.shape[0] > 1 else audio[0]
    return np.ascontiguousarray(audio, dtype=np.float32)
