"""An offline, parallel, multi-variety speech corpus synthesized with espeak-ng.

Sentences: Han-only sentences of 5-20 characters from the HKCanCor corpus shipped in ``pycantonese``.
Each sentence is rendered by every *rendering* below, so all varieties share ``sentence_id``:

| rendering    | variety   | espeak voice      | input                                                   |
|--------------|-----------|-------------------|---------------------------------------------------------|
| cmn          | Mandarin  | cmn               | simplified Han text                                     |
| cmn-pinyin   | Mandarin  | cmn-latn-pinyin   | pinyin with tone numbers (pypinyin)                     |
| yue          | Cantonese | yue               | traditional Han text                                    |
| hak          | Hakka     | hak               | Pha̍k-fa-sṳ-style romanization from formog2p (Sixian) |

Every utterance draws its own voice variant, speed and pitch (seeded per sentence and rendering), so no
variety has a fixed voice and retrieval cannot match voices instead of content. Sentences Hakka G2P
cannot pronounce are skipped (counted). Splits are sentence-disjoint and deterministic given the seed.
Dev and test sentences get every rendering (parallel sites for retrieval). With
``train_renderings="per-variety"`` a training sentence gets one rendering per variety (Mandarin's two
alternate, seeded), so the same synthesis and training time covers more distinct sentences.
Layout written: ``<corpus_dir>/<rendering>/<utt_id>.flac`` (16 kHz mono) and
``<output_dir>/synth_cuts_{train,dev,test}.jsonl.gz``; rerunning reuses valid audio files.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet
from tqdm import tqdm

from data_prep.common import PrepReport, check_audio, make_cut, save_split
from speechalign.text import is_han, normalize

log = logging.getLogger("speechalign.data_prep")

RENDERINGS = {  # name: (variety label, espeak voice)
    "cmn": ("Mandarin", "cmn"),
    "cmn-pinyin": ("Mandarin", "cmn-latn-pinyin"),
    "yue": ("Cantonese", "yue"),
    "hak": ("Hakka", "hak"),
}
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
SPEED = (135, 195)   # words per minute
PITCH = (25, 75)
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Sentence:
    sentence_id: str
    traditional: str     # as in HKCanCor
    simplified: str      # normalize(traditional): the transcript
    inputs: dict         # rendering -> text fed to espeak


def candidate_sentences(min_chars: int = 5, max_chars: int = 20) -> list[str]:
    """Unique Han-only sentences of HKCanCor (punctuation stripped), in corpus order."""
    import pycantonese

    seen, out = set(), []
    for words in pycantonese.hkcancor().words(by_utterance=True):
        raw = "".join(words)
        text = "".join(ch for ch in raw if is_han(ch))
        if not (min_chars <= len(text) <= max_chars) or len(normalize(raw)) != len(text) or text in seen:
            continue  # the length check drops sentences with Latin letters or digits
        seen.add(text)
        out.append(text)
    return out


# Taiwan Hakka Pinyin (formog2p, Sixian) -> the Pha̍k-fa-sṳ-style spelling espeak-ng's hak voice reads.
_INITIALS = [("zh", "ch"), ("ch", "chh"), ("sh", "s"), ("rh", "y"), ("ng", "ng"), ("b", "p"), ("p", "ph"),
             ("d", "t"), ("t", "th"), ("g", "k"), ("k", "kh"), ("z", "ts"), ("c", "tsh"), ("j", "ch"),
             ("q", "chh"), ("x", "s")]
_CODAS = {"b": "p", "d": "t", "g": "k"}
_TONES = {"24": "1", "11": "5", "31": "2", "55": "3", "2": "4", "5": "8"}
_SYLLABLE = re.compile(r"^([a-z]+?)(\d+)$")


def hakka_syllable(syl: str) -> str:
    m = _SYLLABLE.match(syl)
    if not m:
        raise ValueError(f"unexpected Hakka syllable {syl!r}")
    body, tone = m.groups()
    for src, dst in _INITIALS:
        if body.startswith(src):
            body = dst + body[len(src):]
            break
    if body[-1] in _CODAS and len(body) > 1 and not body.endswith("ng"):
        body = body[:-1] + _CODAS[body[-1]]
    return body + _TONES.get(tone, "1")


def hakka_romanization(traditional: str) -> str | None:
    """Romanization for espeak's hak voice, or None when the Hakka lexicon lacks a word."""
    from formog2p.hakka import g2p

    result = g2p(traditional, "hak_sx", "pinyin")
    if result.has_unknown:
        return None
    return " ".join(hakka_syllable(s) for word in result.pronunciations for s in word.split())


def pinyin_input(simplified: str) -> str:
    from pypinyin import Style, lazy_pinyin

    return " ".join(lazy_pinyin(simplified, style=Style.TONE3, neutral_tone_with_five=True))


def common_characters_only(pool: list[str], vocabulary_size: int) -> list[str]:
    """The sentences of ``pool`` written only with its ``vocabulary_size`` most frequent (normalized)
    characters; ties are broken by first occurrence, so the choice is deterministic."""
    counts: dict[str, int] = {}
    for text in pool:
        for ch in normalize(text):
            counts[ch] = counts.get(ch, 0) + 1
    common = set(sorted(counts, key=lambda ch: -counts[ch])[:vocabulary_size])
    kept = [text for text in pool if set(normalize(text)) <= common]
    log.info("synth: %d of %d candidate sentences use only the %d most frequent characters",
             len(kept), len(pool), vocabulary_size)
    return kept


def select_sentences(num: int, seed: int, report: PrepReport, vocabulary_size: int | None = None) -> list[Sentence]:
    """``num`` sentences every rendering can pronounce, chosen deterministically from the seed (and, with
    ``vocabulary_size``, written with that many of the corpus's most frequent characters)."""
    import opencc

    pool = candidate_sentences()
    if vocabulary_size is not None:
        pool = common_characters_only(pool, vocabulary_size)
    random.Random(seed).shuffle(pool)
    to_trad = opencc.OpenCC("s2t")
    chosen = []
    for text in pool:
        if len(chosen) == num:
            break
        simplified = normalize(text)
        hakka = hakka_romanization(to_trad.convert(simplified))
        if hakka is None:
            report.skip(text, "hakka-g2p: a word is missing from the Hakka lexicon")
            continue
        inputs = {"cmn": simplified, "cmn-pinyin": pinyin_input(simplified), "yue": text, "hak": hakka}
        chosen.append(Sentence(f"s{len(chosen):05d}", text, simplified, inputs))
    if len(chosen) < num:
        within = "" if vocabulary_size is None else f" within the {vocabulary_size} most frequent characters"
        raise ValueError(f"synth: only {len(chosen)} usable sentences{within}, {num} requested")
    return chosen


def _job_seed(seed: int, sentence_id: str, rendering: str) -> int:
    return zlib.crc32(f"{seed}/{sentence_id}/{rendering}".encode())


def _trim(audio: np.ndarray, threshold: float = 0.01, pad: int = 1600) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if len(loud) == 0:
        return audio
    return audio[max(0, loud[0] - pad) : loud[-1] + pad]


def render(job: tuple) -> dict:
    """Synthesize one utterance (runs in a worker process); reuses a valid existing file."""
    sentence_id, rendering, text, path, seed = job
    rng = random.Random(seed)
    variant, speed, pitch = rng.choice(VARIANTS), rng.randint(*SPEED), rng.randint(*PITCH)
    path = Path(path)
    info = {"path": str(path), "variant": variant, "speed": speed, "pitch": pitch}
    if path.is_file():
        try:
            if sf.info(str(path)).frames > 0:
                return info
        except RuntimeError:
            pass
    voice = RENDERINGS[rendering][1]
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = ["espeak-ng", "-v", f"{voice}+{variant}", "-s", str(speed), "-p", str(pitch), "-w", str(wav), text]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wav.is_file():
            return {**info, "error": f"espeak-ng failed: {proc.stderr.strip()[:200]}"}
        audio, sr = sf.read(str(wav), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    import soxr

    audio = _trim(soxr.resample(audio, sr, SAMPLE_RATE))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.tmp.flac")
    sf.write(str(tmp_path), audio, SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp_path, path)
    return info


def split_sentences(sentences: list[Sentence], dev_fraction: float, test_fraction: float,
                    seed: int) -> dict[str, list[Sentence]]:
    order = list(sentences)
    random.Random(seed + 1).shuffle(order)
    n_test = math.ceil(test_fraction * len(order)) if test_fraction > 0 else 0
    n_dev = math.ceil(dev_fraction * len(order)) if dev_fraction > 0 else 0
    return {"test": order[:n_test], "dev": order[n_test : n_test + n_dev], "train": order[n_test + n_dev :]}


def renderings_for(sentence_id: str, split: str, train_renderings: str, seed: int) -> list[str]:
    if split != "train" or train_renderings == "all":
        return list(RENDERINGS)
    if train_renderings != "per-variety":
        raise ValueError(f"synth: train_renderings must be 'all' or 'per-variety', got {train_renderings!r}")
    order = list(RENDERINGS)
    random.Random(_job_seed(seed, sentence_id, "renderings")).shuffle(order)
    chosen: dict[str, str] = {}
    for rendering in order:
        chosen.setdefault(RENDERINGS[rendering][0], rendering)
    return [r for r in RENDERINGS if r in chosen.values()]


def prepare_synth(corpus_dir: str | Path, output_dir: str | Path, num_sentences: int = 300, seed: int = 0,
                  renditions: int = 1, dev_fraction: float = 0.1, test_fraction: float = 0.1,
                  num_workers: int | None = None, train_renderings: str = "all",
                  vocabulary_size: int | None = None) -> dict[str, CutSet]:
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("synth: espeak-ng not found; install it (apt-get install espeak-ng)")
    corpus_dir, output_dir = Path(corpus_dir), Path(output_dir)
    report = PrepReport("synth")
    sentences = select_sentences(num_sentences, seed, report, vocabulary_size)
    splits = split_sentences(sentences, dev_fraction, test_fraction, seed)
    split_of = {s.sentence_id: split for split, members in splits.items() for s in members}
    jobs, keys = [], []
    for s in sentences:
        for rendering in renderings_for(s.sentence_id, split_of[s.sentence_id], train_renderings, seed):
            for k in range(renditions):
                site = rendering if renditions == 1 else f"{rendering}-{k}"
                utt_id = f"{s.sentence_id}-{site}"
                path = corpus_dir / site / f"{utt_id}.flac"
                jobs.append((s.sentence_id, rendering, s.inputs[rendering], str(path),
                             _job_seed(seed, s.sentence_id, site)))
                keys.append((s, rendering, site, utt_id))
    workers = num_workers or os.cpu_count() or 1
    # fork: workers need only this module's function; spawn would re-import the caller's __main__.
    with get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
        results = list(tqdm(pool.imap(render, jobs, chunksize=8), total=len(jobs), desc="espeak-ng", unit="utt"))
    by_sentence: dict[str, list] = {}
    for (s, rendering, site, utt_id), info in zip(keys, results):
        if "error" in info:
            report.skip(info["path"], f"synthesis: {info['error']}")
            continue
        recording = check_audio(info["path"], report, recording_id=utt_id)
        if recording is None:
            continue
        variety = RENDERINGS[rendering][0]
        cut = make_cut(recording, s.traditional, variety, report, speaker=f"{site}-{info['variant']}",
                       sentence_id=s.sentence_id, site=site, subgroup=rendering.split("-")[0],
                       voice=RENDERINGS[rendering][1], variant=info["variant"], speed=info["speed"],
                       pitch=info["pitch"], input_text=s.inputs[rendering])
        if cut is not None:
            by_sentence.setdefault(s.sentence_id, []).append(cut)
    out = {}
    for split, members in splits.items():
        cuts = [c for s in members for c in by_sentence.get(s.sentence_id, [])]
        out[split] = save_split(cuts, output_dir, "synth", split, report)
    report.write(output_dir)
    return out


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("synth", help="offline parallel corpus synthesized with espeak-ng (Mandarin, Cantonese, Hakka)")
    p.add_argument("--output-dir", required=True, type=Path, help="where manifests are written")
    p.add_argument("--corpus-dir", type=Path, help="where audio is written (default: <output-dir>/audio)")
    p.add_argument("--num-sentences", type=int, default=300, help="parallel sentences, each spoken by every variety")
    p.add_argument("--seed", type=int, default=0, help="seed of the sentence choice, voices, speeds and pitches")
    p.add_argument("--renditions", type=int, default=1, help="renderings per sentence and voice (sites)")
    p.add_argument("--dev-fraction", type=float, default=0.1, help="fraction of the sentences held out for dev")
    p.add_argument("--test-fraction", type=float, default=0.1, help="fraction of the sentences held out for test")
    p.add_argument("--num-workers", type=int, default=None, help="espeak-ng processes (default: one per CPU core)")
    p.add_argument("--train-renderings", choices=("all", "per-variety"), default="all",
                   help="renderings of a training sentence: all, or one per variety (more sentences per hour)")
    p.add_argument("--vocabulary-size", type=int, default=None,
                   help="only sentences written with the corpus's N most frequent characters (each is seen more often)")
    p.set_defaults(func=lambda a: prepare_synth(a.corpus_dir or a.output_dir / "audio", a.output_dir,
                                               a.num_sentences, a.seed, a.renditions, a.dev_fraction,
                                               a.test_fraction, a.num_workers, a.train_renderings,
                                               a.vocabulary_size))
