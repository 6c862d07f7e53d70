"""Pieces every corpus adapter shares: the unified dialect labels, audio checks, cut building,
counted skips with a report, and atomic manifest writes.

Manifest conventions (every adapter): one ``<corpus>_cuts_<split>.jsonl.gz`` per split; each cut has
exactly one supervision whose ``text`` is ``normalize(raw)``, ``language`` is a unified dialect label
from :data:`DIALECT_LABELS`, and ``custom`` holds ``raw_text`` plus optional ``translation``,
``sentence_id``, ``site``, ``subgroup``. Audio is referenced in place (never copied); a sampling rate
other than 16 kHz is resampled by a lhotse transform and multi-channel audio is downmixed when loaded.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.cut import Cut

from speechalign.data.audio import quiet_id3
from speechalign.data.contamination import PrepReport, add_exclude_option, drop_contaminated
from speechalign.text import normalize

log = logging.getLogger("speechalign.data_prep")

SAMPLE_RATE = 16000

#: Unified dialect labels: (corpus, corpus-specific key) -> label. Documented in README.
DIALECT_LABELS: dict[tuple[str, str], str] = {
    ("kespeech", "Mandarin"): "Mandarin",
    ("kespeech", "Beijing"): "Beijing",
    ("kespeech", "Southwestern"): "Southwestern",
    ("kespeech", "Zhongyuan"): "Zhongyuan",
    ("kespeech", "Northeastern"): "Northeastern",
    ("kespeech", "Lan-Yin"): "Lan-Yin",
    ("kespeech", "Jiang-Huai"): "Jiang-Huai",
    ("kespeech", "Ji-Lu"): "Ji-Lu",
    ("kespeech", "Jiao-Liao"): "Jiao-Liao",
    ("mdcc", "yue"): "Cantonese",
    ("commonvoice", "zh-CN"): "Mandarin",
    ("commonvoice", "zh-HK"): "Cantonese",
    ("commonvoice", "yue"): "Cantonese",
    ("commonvoice", "zh-TW"): "Taiwan Mandarin",
    ("aishell", "zh"): "Mandarin",
    ("fleurs", "cmn_hans_cn"): "Mandarin",
    ("fleurs", "yue_hant_hk"): "Cantonese",
    ("tw-hokkien", "nan"): "Hokkien",
    ("tw-hokkien", "cmn"): "Mandarin",
    ("goo-gi", "g"): "Mandarin",
    ("goo-gi", "m"): "Taiwanese Hokkien",
    ("goo-gi", "j"): "Kinmen Hokkien",
    ("goo-gi", "f"): "Matsu Eastern Min",
    ("goo-gi", "c"): "Sixian Hakka",
    ("goo-gi", "h"): "Hailu Hakka",
    ("goo-gi", "d"): "Dapu Hakka",
    ("goo-gi", "r"): "Raoping Hakka",
    ("goo-gi", "z"): "Zhao'an Hakka",
    ("goo-gi", "l"): "Changle Hakka",
    ("lan-lai", "nan"): "Taiwanese Hokkien",
    # Fuzhou is the Eastern Min spoken on Matsu: one label, so CER and the training mix treat it as goo-gi's f.
    ("foochow-idioms", "fuzhou"): "Matsu Eastern Min",
    ("kasu100", "zhaoan"): "Zhao'an Hakka",
}

#: YuBao subgroup -> unified label (the subgroup itself is kept in ``custom["subgroup"]``).
YUBAO_SUBGROUP_LABELS = {
    "zh_standard": "Mandarin",
    "zh_dialect": "Mandarin dialect",
    "gan": "Gan",
    "hsn": "Xiang",
    "min": "Min",
    "hak": "Hakka",
    "yue": "Cantonese",
    "wuu": "Wu",
}


def dialect_label(corpus: str, key: str) -> str:
    try:
        return DIALECT_LABELS[(corpus, key)]
    except KeyError:
        known = sorted(k for c, k in DIALECT_LABELS if c == corpus)
        raise ValueError(f"{corpus}: unknown dialect key {key!r}; known: {known}") from None


class CorpusLayoutError(FileNotFoundError):
    """The corpus directory is missing or is not laid out as the adapter expects."""


def require_dir(path: str | Path, corpus: str, layout: str) -> Path:
    """Fail with the expected layout when ``path`` is not a directory."""
    path = Path(path)
    if not path.is_dir():
        raise CorpusLayoutError(f"{corpus}: corpus directory {path} does not exist; expected layout:\n{layout}")
    return path


def require_paths(root: Path, corpus: str, layout: str, *relative: str) -> None:
    missing = [r for r in relative if not (root / r).exists()]
    if missing:
        raise CorpusLayoutError(
            f"{corpus}: {root} lacks {', '.join(missing)}; expected layout:\n{layout}")


def write_cuts(cuts: Iterable[Cut], output_dir: str | Path, corpus: str, split: str) -> Path:
    """Write ``<corpus>_cuts_<split>.jsonl.gz`` atomically (a crash never leaves half a manifest)."""
    path = Path(output_dir) / f"{corpus}_cuts_{split}.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{corpus}_cuts_{split}.tmp.jsonl.gz")
    CutSet.from_cuts(cuts).to_file(tmp)
    os.replace(tmp, path)
    return path


def save_split(cuts: list[Cut], output_dir: str | Path, corpus: str, split: str, report: PrepReport) -> CutSet:
    """Write one split's manifest, count it in the report, and return it."""
    write_cuts(cuts, output_dir, corpus, split)
    report.kept[split] = len(cuts)
    return CutSet.from_cuts(cuts)


def check_audio(path: str | Path, report: PrepReport, *, recording_id: str | None = None) -> Recording | None:
    """A Recording for a readable, non-empty, finite audio file; otherwise a counted skip.

    Integer PCM cannot hold NaN, so only float-coded files are read in full to check for it.
    """
    path = Path(path)
    if not path.is_file():
        report.skip(path, "missing: audio file not found")
        return None
    with quiet_id3(path):
        try:
            info = sf.info(str(path))
        except Exception as e:  # soundfile raises a generic error type for unreadable files
            report.skip(path, f"unreadable: {str(e).splitlines()[0][:120]}")
            return None
        if info.frames == 0 or info.duration <= 0:
            report.skip(path, "empty: audio has zero samples")
            return None
        if info.subtype in ("FLOAT", "DOUBLE"):
            data, _ = sf.read(str(path), dtype="float32", always_2d=True)
            if not np.isfinite(data).all():
                report.skip(path, "nan: audio contains NaN or inf samples")
                return None
        return Recording.from_file(path, recording_id=recording_id or path.stem)


def make_cut(
    recording: Recording,
    raw_text: str,
    language: str,
    report: PrepReport,
    *,
    speaker: str | None = None,
    cut_id: str | None = None,
    **custom,
) -> Cut | None:
    """One cut spanning the recording, with normalized text; ``None`` (counted) if text is empty."""
    text = normalize(raw_text)
    if not text:
        report.skip(recording.id, f"empty-text: transcript {raw_text!r} is empty after normalization")
        return None
    if recording.sampling_rate != SAMPLE_RATE:
        recording = recording.resample(SAMPLE_RATE)
    cut = recording.to_cut()
    if cut_id:
        cut.id = cut_id
    channel = recording.channel_ids if recording.num_channels > 1 else recording.channel_ids[0]
    cut.supervisions = [SupervisionSegment(
        id=cut.id, recording_id=recording.id, start=0.0, duration=recording.duration,
        channel=channel, text=text, language=language, speaker=speaker,
        custom={"raw_text": raw_text, **{k: v for k, v in custom.items() if v is not None}},
    )]
    return cut


def relabel_cuts(
    cuts: Iterable[Cut],
    label: Callable[[Cut], str],
    report: PrepReport,
    **custom_for_cut: Callable[[Cut], object],
) -> list[Cut]:
    """Normalize the text and set the unified label of cuts built by a lhotse recipe.

    Each cut must carry one supervision; empty texts and silent/zero-length audio are counted skips.
    """
    out = []
    for cut in cuts:
        if len(cut.supervisions) != 1:
            report.skip(cut.id, f"supervisions: expected 1 supervision, found {len(cut.supervisions)}")
            continue
        if not cut.duration or not math.isfinite(cut.duration) or cut.duration <= 0:
            report.skip(cut.id, "empty: zero-length audio")
            continue
        sup = cut.supervisions[0]
        raw = sup.text or ""
        text = normalize(raw)
        if not text:
            report.skip(cut.id, f"empty-text: transcript {raw!r} is empty after normalization")
            continue
        extra = {k: f(cut) for k, f in custom_for_cut.items()}
        sup.custom = {**(sup.custom or {}), "raw_text": raw, **{k: v for k, v in extra.items() if v is not None}}
        sup.text = text
        sup.language = label(cut)
        if cut.sampling_rate != SAMPLE_RATE:
            cut = cut.resample(SAMPLE_RATE)
        cut.id = sup.id  # one supervision per cut: its id is the natural cut id
        out.append(cut)
    return out


def cuts_from_lhotse(manifests: dict, split: str) -> CutSet:
    """Cuts from one split of a lhotse recipe's ``{split: {recordings, supervisions}}`` result."""
    part = manifests[split]
    return CutSet.from_manifests(recordings=part["recordings"], supervisions=part["supervisions"])


class CorpusError(RuntimeError):
    """A corpus file could not be processed by lhotse's recipe (the message names the file)."""


def run_lhotse_recipe(corpus: str, recipe, *args, **kwargs):
    """Call a lhotse recipe, turning its assertion/audio errors into one line that names the file."""
    try:
        return recipe(*args, **kwargs)
    except AssertionError as e:
        raise CorpusLayoutError(f"{corpus}: {e}") from None
    except Exception as e:  # lhotse raises assorted types (AudioLoadingError, KeyError, ValueError)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CorpusError(f"{corpus}: lhotse's {recipe.__name__} failed: {first[:300]}") from None


def note_dropped(report: PrepReport, split: str, expected: int, kept: int, what: str) -> None:
    """Record items a lhotse recipe dropped on its own (e.g. audio without transcript)."""
    if expected > kept:
        report.skip(f"{split}: {expected - kept} item(s)", f"dropped-by-lhotse: {what}")


_ALTERNATIVE = re.compile(r"[（(][^（）()]*[）)]")


def clean_transcript(raw: str) -> tuple[str, list[str]]:
    """Drop parenthesized alternatives (``暗餐（夜餐）`` -> ``暗餐``: the first reading is kept) and
    replace bracketed component spellings; returns the text and the bracket spellings left unknown."""
    from data_prep.component_spellings import replace_component_spellings

    return replace_component_spellings(_ALTERNATIVE.sub("", raw))


def note_alternatives(report: PrepReport, cuts: Iterable[Cut]) -> None:
    """List the cuts whose raw text had parenthesized alternatives removed by :func:`clean_transcript`."""
    cut_ids = sorted(c.id for c in cuts if any(p in c.supervisions[0].custom["raw_text"] for p in "（("))
    if cut_ids:
        report.note(f"{len(cut_ids)} cut(s) had parenthesized alternatives removed from the text (the first "
                    f"reading is kept; speakers may read both): {', '.join(cut_ids)}")


def note_unknown_spellings(report: PrepReport, unknown: Counter) -> None:
    if unknown:
        report.note("unknown bracket spellings left in the text (normalization keeps their components): "
                    + ", ".join(f"{s} x{n}" for s, n in unknown.most_common()))


def decoded_recordings(items: list[tuple[Path, str]], report: PrepReport,
                       tolerance: float = 0.05) -> dict[str, Recording]:
    """Recordings (keyed by id) whose length is the decoded one, not the file header's.

    MP3 headers can be wrong by seconds (a stale Xing/VBR frame count), and lhotse's loader rejects
    a recording whose decoded length disagrees with its manifest. So each file is decoded once with
    lhotse's own read path (the backend that will load it at training time) and the decoded sample
    count is stored; header/decoded differences above ``tolerance`` seconds are listed in a note.
    Missing, unreadable, empty or non-finite audio is a counted skip.
    """
    from lhotse.audio.backend import read_audio
    from lhotse.utils import fastcopy
    from tqdm import tqdm

    out, lying = {}, []
    for path, rec_id in tqdm(items, desc=f"{report.corpus}: decoding audio", unit="file", mininterval=5):
        if not path.is_file():
            report.skip(path, "missing: audio file not found")
            continue
        try:
            with quiet_id3(path):
                header = Recording.from_file(path, recording_id=rec_id)
                samples, sr = read_audio(path)
        except Exception as e:  # lhotse/soundfile raise assorted types for undecodable files
            first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
            report.skip(path, f"unreadable: {first}")
            continue
        if samples.size == 0:
            report.skip(path, "empty: audio has zero samples")
            continue
        if not np.isfinite(samples).all():
            report.skip(path, "nan: audio contains NaN or inf samples")
            continue
        n = samples.shape[-1]
        if sr != header.sampling_rate:
            report.skip(path, f"unreadable: header says {header.sampling_rate} Hz, decoder {sr} Hz")
            continue
        if abs(n / sr - header.duration) > tolerance:
            lying.append(f"{path.parent.name}/{path.name} (header {header.duration:.2f} s, decoded {n / sr:.2f} s)")
        out[rec_id] = fastcopy(header, num_samples=n, duration=n / sr)
    if lying:
        report.note(f"{len(lying)} of {len(items)} files: decoded length differs from the header by more than "
                    f"{tolerance * 1000:.0f} ms (the decoded length is used): " + ", ".join(lying))
    return out


def save_training_corpus(cuts: list[Cut], output_dir: str | Path, corpus: str, report: PrepReport,
                         exclude_texts_from: list[str | Path] | None = None) -> dict[str, CutSet]:
    """A corpus that is training data only: drop cuts whose text is in an evaluation manifest (counted),
    write the train split and the report."""
    if exclude_texts_from:
        cuts = drop_contaminated(cuts, exclude_texts_from, report)
    out = {"train": save_split(cuts, output_dir, corpus, "train", report)}
    report.write(output_dir)
    return out


def add_training_corpus_cli(subparsers, name: str, help: str, layout: str, prepare: Callable) -> None:
    """``speechalign prepare <name> --corpus-dir D --output-dir O [--exclude-texts-from M ...]``."""
    p = subparsers.add_parser(name, help=help)
    p.add_argument("--corpus-dir", required=True, type=Path, help=f"{name} root ({layout})")
    p.add_argument("--output-dir", required=True, type=Path, help="where the manifest and the report are written")
    add_exclude_option(p)
    p.set_defaults(func=lambda a: prepare(a.corpus_dir, a.output_dir, exclude_texts_from=a.exclude_texts_from))


