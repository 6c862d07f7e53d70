"""``speechalign decode-whisper``: the full pretrained Whisper (its own decoder) via CTranslate2,
scored exactly like our models' decodes (same normalization, per-dialect CER, recogs/errs files).

Two backends over the same CTranslate2 model directory:

* ``ct2-greedy`` (the default): one ``Whisper.generate`` call per batch, greedy (or ``--beam N``), no
  temperature fallback and no repetition guard; modes ``whisper_greedy`` / ``whisper_beam``. On
  out-of-domain speech it can loop until the length limit.
* ``faster-whisper``: what users run over that model, ``WhisperModel.transcribe`` one utterance at a time
  at its defaults (beam 5 unless ``--beam``, best_of 5, temperature fallback 0.0-1.0 on a gzip compression
  ratio > 2.4 or a mean log-probability < -1.0, no-speech threshold 0.6, conditioned on the previous
  window's text), segment texts joined; mode ``faster_whisper_beam<B>``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet
from tqdm import tqdm

from speechalign.data.dataset import eval_loader
from speechalign.data.manifest import load_cuts
from speechalign.decode.cer import CerScorer
from speechalign.decode.report import Utterance, report_set
from speechalign.models.frontend import SAMPLE_RATE, WhisperLogMel

log = logging.getLogger("speechalign.decode")
WINDOW_S = 30
WINDOW = WINDOW_S * SAMPLE_RATE  # Whisper's encoder only accepts exactly 30 s (3000 frames)


def check_ct2_dir(ct2_dir: str | Path) -> Path:
    """The directory, or one clear error naming what is missing and how to get it."""
    ct2_dir = Path(ct2_dir)
    missing = [f for f in ("model.bin", "tokenizer.json") if not (ct2_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{ct2_dir}: not a CTranslate2 Whisper directory, missing {' and '.join(missing)} "
                                "(get one with `speechalign fetch-pretrained whisper-base`, which keeps it in <out>/ct2/)")
    return ct2_dir


class WhisperText:
    """Prompt ids and id -> text from Whisper's tokenizer.json (special tokens looked up by name)."""

    def __init__(self, tokenizer_json: Path, language: str):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_json))
        names = ["<|startoftranscript|>", f"<|{language}|>", "<|transcribe|>", "<|notimestamps|>", "<|endoftext|>"]
        ids = [self.tok.token_to_id(n) for n in names]
        absent = [n for n, i in zip(names, ids) if i is None]
        if absent:
            raise ValueError(f"{tokenizer_json}: no token {', '.join(absent)}"
                             + (f" (is {language!r} a Whisper language code?)" if names[1] in absent else ""))
        self.prompt, self.eot = ids[:4], ids[4]

    def decode(self, ids: list[int]) -> str:
        # Whisper puts every special and timestamp token after <|endoftext|>, as faster-whisper relies on.
        return self.tok.decode([i for i in ids if i < self.eot], skip_special_tokens=True)


def whisper_features(wav: torch.Tensor, wav_lens: torch.Tensor, mel: WhisperLogMel) -> np.ndarray:
    """(B, N) 16-kHz audio -> (B, n_mels, 3000) float32, as WhisperFeatureExtractor on a zero-padded
    30-s window (its peak clamp spans the whole window, so valid length = the window)."""
    if int(wav_lens.max()) > WINDOW:
        raise ValueError(f"audio longer than {WINDOW_S} s cannot be fed to Whisper in one window")
    # The batch is zero padded (collate_audio), exactly like Whisper's own 30-s padding.
    padded = torch.nn.functional.pad(wav.float(), (0, WINDOW - wav.shape[1]))
    feats, _ = mel(padded, torch.full_like(wav_lens, WINDOW))
    return np.ascontiguousarray(feats.numpy(), dtype=np.float32)


def load_whisper(ct2_dir: Path, device: str, compute_type: str, threads: int = 0):
    try:
        import ctranslate2
    except ImportError:  # a dependency of the package: only a broken or partial install lacks it
        raise RuntimeError("decode-whisper needs CTranslate2, which speechalign's install brings: rerun "
                           "tools/install.sh (or .venv/bin/python -m pip install -e .)") from None

    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return ctranslate2.models.Whisper(str(ct2_dir), device=device, compute_type=compute_type, intra_threads=threads)


def generate(model, feats: np.ndarray, text: WhisperText, beam: int, max_length: int) -> list[str]:
    """One ``Whisper.generate`` call on a batch of features; one text per row."""
    import ctranslate2

    results = model.generate(ctranslate2.StorageView.from_array(feats), [text.prompt] * len(feats),
                             beam_size=beam, max_length=max_length, suppress_blank=True)
    return [text.decode(r.sequences_ids[0]) for r in results]


def _within_window(cutset: CutSet, set_name: str) -> tuple[CutSet, list[str]]:
    """Cuts that fit one 30-s window, and the ids of those skipped (counted, never silent)."""
    kept, skipped = [], []
    for cut in cutset:
        (kept if cut.duration <= WINDOW_S else skipped).append(cut)
    if skipped:
        log.warning("%s: skipped %d cut(s) longer than %d s (Whisper decodes one 30-s window), e.g. %s",
                    set_name, len(skipped), WINDOW_S, [c.id for c in skipped[:3]])
    return CutSet.from_cuts(kept), [c.id for c in skipped]


BACKENDS = ("ct2-greedy", "faster-whisper")
SAMPLING_SEED = 0


class FasterWhisper:
    """faster-whisper's ``WhisperModel`` on a local CTranslate2 dir, offline: its tokenizer.json is there,
    and without a preprocessor_config.json the feature extractor gets the model's mel bins."""

    def __init__(self, ct2_dir: Path, device: str, compute_type: str, language: str, beam: int, threads: int = 0,
                 max_new_tokens: int | None = None):
        try:
            import faster_whisper
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError:
            raise RuntimeError("decode-whisper --backend faster-whisper needs faster-whisper: "
                               ".venv/bin/python -m pip install faster-whisper") from None
        if device == "auto":
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        # "default" keeps the converted type, which CTranslate2 runs as float32 on CPU (float16 weights).
        compute_type = "float32" if compute_type == "default" and device == "cpu" else compute_type
        self.model = faster_whisper.WhisperModel(str(ct2_dir), device=device, compute_type=compute_type,
                                                 cpu_threads=threads)
        if self.model.feature_extractor.mel_filters.shape[0] != self.model.model.n_mels:
            self.model.feature_extractor = FeatureExtractor(feature_size=self.model.model.n_mels)
        self.language, self.beam, self.version = language, beam, faster_whisper.__version__
        self.compute_type, self.max_new_tokens = compute_type, max_new_tokens
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)   # not one INFO line per utterance

    def transcribe(self, audio: np.ndarray) -> str:
        import ctranslate2

        # Its temperature fallback samples: seeded per utterance, so a rerun (or another batch size) gives
        # the same hypotheses.
        ctranslate2.set_random_seed(SAMPLING_SEED)
        segments, _ = self.model.transcribe(audio, language=self.language, task="transcribe", beam_size=self.beam,
                                            max_new_tokens=self.max_new_tokens)
        return "".join(s.text for s in segments).strip()

    def describe(self) -> str:
        return (f"faster-whisper {self.version} WhisperModel.transcribe at its defaults (beam_size={self.beam}, "
                "best_of=5, temperature fallback 0.0-1.0, compression_ratio_threshold=2.4, log_prob_threshold=-1.0, "
                f"no_speech_threshold=0.6, condition_on_previous_text=True; sampling seed {SAMPLING_SEED} per "
                f"utterance), compute_type={self.compute_type}"
                + (f", max_new_tokens={self.max_new_tokens}" if self.max_new_tokens else ""))


def decode_ct2_whisper(ct2_dir: str | Path, cuts: list[str | Path], out_dir: str | Path, language: str = "zh",
                       beam: int | None = None, max_duration: float = 240.0, device: str = "cpu",
                       compute_type: str = "default", max_length: int | None = None,
                       backend: str = "ct2-greedy", threads: int = 0) -> dict[str, CerScorer]:
    """Decode each manifest zero-shot and write reports to ``out_dir``; returns scorers by set name.

    ``max_duration`` counts padded 30-s windows (what the encoder actually computes): 240 -> 8 per batch.
    ``backend``: ``ct2-greedy`` (beam default 1) or ``faster-whisper`` (beam default 5, its own default;
    one utterance at a time, as its ``transcribe`` takes them). Both skip cuts over 30 s, so every row
    covers the same sentences. ``threads``: CPU threads (0 = CTranslate2's default, every core).
    ``max_length``: most tokens generated per utterance (None: 448 for ct2-greedy, faster-whisper's own limit).
    """
    if backend not in BACKENDS:
        raise ValueError(f"decode-whisper: unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    beam = beam if beam is not None else (5 if backend == "faster-whisper" else 1)
    if beam < 1:
        raise ValueError(f"decode-whisper: --beam must be >= 1, got {beam}")
    ct2_dir, out_dir = check_ct2_dir(ct2_dir), Path(out_dir)
    text = WhisperText(ct2_dir / "tokenizer.json", language)
    if backend == "faster-whisper":
        fw = FasterWhisper(ct2_dir, device, compute_type, language, beam, threads, max_length)
        mode = f"faster_whisper_beam{beam}"
    else:
        model = load_whisper(ct2_dir, device, compute_type, threads)
        mel = WhisperLogMel(model.n_mels)
        mode = f"whisper_{'greedy' if beam == 1 else 'beam'}"
    results = {}
    for path in cuts:
        set_name = Path(path).name.split(".")[0].replace("_cuts_", "_")  # as decode(): <corpus>_<split>
        cutset, skipped = _within_window(load_cuts(path), set_name)
        utts, audio, start = [], 0.0, time.perf_counter()
        batch_size = max(1, int(max_duration // WINDOW_S))
        for batch in tqdm(eval_loader(cutset, None, max_cuts=batch_size), desc=f"{mode} {set_name}", unit="batch"):
            if backend == "faster-whisper":
                hyps = [fw.transcribe(batch.wav[i, : int(n)].numpy()) for i, n in enumerate(batch.wav_lens)]
            else:
                hyps = generate(model, whisper_features(batch.wav, batch.wav_lens, mel), text, beam, max_length or 448)
            audio += float(batch.wav_lens.sum()) / SAMPLE_RATE
            utts += [Utterance(i, d, r, h) for i, d, r, h in zip(batch.ids, batch.dialects, batch.texts, hyps)]
        rtf = (time.perf_counter() - start) / max(audio, 1e-9)
        # write_reports normalizes reference and hypothesis alike, so raw Whisper text goes in here.
        what = (f"zero-shot {fw.describe()} on CTranslate2 Whisper {ct2_dir}" if backend == "faster-whisper"
                else f"zero-shot CTranslate2 Whisper {ct2_dir}")
        note = (f"{what}, language={language}, beam={beam}, RTF={rtf:.4f}"
                + (f", max_length={max_length}" if max_length else "")
                + (f", skipped {len(skipped)} cut(s) > {WINDOW_S} s" if skipped else ""))
        results[set_name] = report_set(out_dir, set_name, mode, utts, rtf, note)
    return results
