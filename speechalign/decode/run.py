"""``speechalign decode``, ``transcribe`` and ``score``: batched decoding from an experiment dir."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from speechalign.config import objective
from speechalign.data.audio import quiet_id3
from speechalign.data.dataset import eval_loader
from speechalign.data.manifest import check_unique_ids, open_cuts
from speechalign.data.packing import pack_in_order
from speechalign.decode import ATTENTION_MODES, MODES  # noqa: F401 (MODES: this module's public names)
from speechalign.decode.batch import ctc_weight_for, mode_label, supported_modes, translates
from speechalign.decode.lm import CharLM, LMOptions
from speechalign.decode.longform import LongForm, VadSettings, read_windows
from speechalign.decode.report import Utterance, lm_effect, read_text_file, report_set, write_reports
from speechalign.models.experiment import load_experiment

log = logging.getLogger("speechalign.decode")


def decode(exp_dir: str | Path, cuts: list[str | Path], mode: str = "ctc_greedy", beam: int = 10,
           checkpoint: str = "latest", ctc_weight: float | None = None, max_duration: float = 120.0,
           device: str = "cpu", skip_bad: bool = False, lm: LMOptions | None = None,
           force_cpu_search: bool = False, router: str | Path | None = None, engine: str = "torch",
           pack: bool = False, compute_type: str | None = None,
           vad: VadSettings | None = None, max_length: int | None = None) -> dict[str, object]:
    """Decode each manifest and write reports to ``<exp>/decode/<checkpoint>/``; returns scorers.
    An unreadable utterance is an error naming its file, or with ``skip_bad`` a counted, listed skip.
    ``lm`` fuses a character n-gram into ctc_prefix_beam, attention_rescoring and joint_beam; the
    beam search runs on the GPU (torchaudio's cuda_ctc_decoder) for CUDA without an LM, unless
    ``force_cpu_search``. ``router`` (a ``train-router`` file of this checkpoint) decodes each utterance with the
    checkpoint its variety is routed to (attention_beam only); reports get ``+route`` in their names.
    ``engine``: ``torch`` or ``ct2`` (CTranslate2, a Whisper experiment's attention_beam; ``+ct2`` reports).
    ``pack``: a 30-s-window Whisper experiment reads several cuts per window, as it trained, and each window's
    text is split back by CTC alignment (``+packed`` reports). A cut longer than the encoder takes (a recording)
    is read long-form: VAD segments (``vad``), packed like a recording given to ``transcribe``. ``max_length``: most
    tokens an attention-decoder hypothesis may have (attention_beam, joint_beam; default: the decoder's limit), as
    a dry run of a pipeline caps an untrained model that never ends its hypotheses."""
    from speechalign.decode.engines import make_engine

    exp_dir = Path(exp_dir)
    for path in cuts:   # each manifest is a set of its own: its recogs and CER need unique ids
        check_unique_ids(path)
    cfg, tokenizer, model = load_experiment(exp_dir, checkpoint, device)
    if lm is not None and mode not in ("ctc_prefix_beam", "attention_rescoring", "joint_beam"):
        raise ValueError(f"--lm: decode mode {mode!r} cannot use an LM (ctc_prefix_beam, attention_rescoring "
                         "and joint_beam can)")
    if lm is not None and mode == "joint_beam" and not model.shares_ctc_vocab:
        raise ValueError("--lm: joint_beam with a Whisper (BPE) decoder takes no character LM; use "
                         "attention_rescoring --lm")
    if mode not in supported_modes(model) and translates(model):
        raise ValueError(f"decode mode {mode!r}: this model's decoder outputs Mandarin translations "
                         f"(model.decoder.targets=translation); choose from {supported_modes(model)}")
    translation = mode == "attention_beam" and translates(model)
    char_lm = (CharLM(lm.path, tokenizer.tokens), lm) if lm is not None and mode == "joint_beam" else None
    run = make_engine(engine, exp_dir, checkpoint, model, tokenizer, mode, beam, ctc_weight, lm, char_lm, device,
                      force_cpu_search, router, compute_type)
    gap = pack_gap(cfg)
    reader = Reader(run, model, tokenizer, pack, gap, vad, max_length)
    routing = getattr(run, "routing", None)
    label = (mode_label(mode, lm) + ("+ct2" if engine == "ct2" else "") + ("+route" if routing else "")
             + ("+packed" if pack else ""))
    out_dir = exp_dir / "decode" / checkpoint
    results = {}
    for path in cuts:
        # <corpus>_<split>: two corpora's test splits must never overwrite each other's reports.
        set_name = Path(path).name.split(".")[0].replace("_cuts_", "_")
        utts, audio, start, skipped = [], 0.0, time.perf_counter(), []
        loader = eval_loader(open_cuts(path), max_duration, min_samples=model.encoder.min_samples)
        for batch in tqdm(loader, desc=f"decode {set_name} {label}", unit="batch"):
            skipped += check_bad(batch.bad, skip_bad, "decode")
            if not batch.ids:
                continue
            texts = reader(batch.wav.to(device), batch.wav_lens.to(device), batch.ids, batch.dialects)
            audio += float(batch.wav_lens.sum()) / 16000
            # A translating decoder is scored against the Mandarin sentence (BLEU/chrF below, CER beside it).
            refs = [t or "" for t in batch.translations] if translation else batch.texts
            utts += [Utterance(i, d, r, h) for i, d, r, h in zip(batch.ids, batch.dialects, refs, texts)]
        rtf = (time.perf_counter() - start) / max(audio, 1e-9)
        note = f", skipped {len(skipped)} unreadable: {'; '.join(skipped[:3])}" if skipped else ""
        fusion = f", {lm.describe()}" if lm is not None else ", no LM"
        weight = (f", ctc_weight={ctc_weight_for(mode, ctc_weight, model):g}"
                  if mode in ("attention_rescoring", "joint_beam") else "")
        cap = f", max_length={max_length}" if max_length and mode in ("attention_beam", "joint_beam") else ""
        task = ", references=Mandarin translations (dialect speech -> Mandarin text; not ASR-only)" if translation else ""
        if routing:
            task += f", {routing.report(out_dir / f'routes-{set_name}-{label}.tsv')}"
        if mode in ATTENTION_MODES and model.prompt == "variety":
            task += ", decoder prompted with the cut's variety label (model.decoder.prompt=variety)"
        task += reader.describe()
        if (trained := objective(cfg)) != "ASR-only":
            task += f", model {trained}"
        results[set_name] = report_set(out_dir, set_name, label, utts, rtf,
                                       f"checkpoint={checkpoint}, beam={beam}{weight}{cap}{fusion}, {run.describe()}, "
                                       f"RTF={rtf:.4f}{note}{task}")
        if translation:
            from speechalign.decode.translation import score_translation

            score_translation(path, recogs=out_dir / f"recogs-{set_name}-{label}.txt")
    if lm is not None and (effect := lm_effect(out_dir)) is not None:
        log.info("without and with the LM: %s", effect)
    return results


def windowed(cfg) -> bool:
    """True for a Whisper experiment read in 30-s windows (``length_mode: pad30``): the kind packed evaluation
    serves. With Whisper's decoder (``model.decoder.pretrained``) the CTranslate2 engine serves it too."""
    return cfg.model.encoder == "whisper" and cfg.model.whisper.length_mode == "pad30"


def pack_gap(cfg) -> float:
    """Seconds of silence between the parts of a packed window: what training used (``data.pack.gap``)."""
    return cfg.data.pack.gap


class Reader:
    """Texts of a batch of utterances: each alone (the default), or packed into 30-s windows and split back
    (``pack``); an utterance longer than the encoder takes is read long-form (VAD segments)."""

    def __init__(self, engine, model, tokenizer, pack: bool, gap: float, vad: VadSettings | None = None,
                 max_length: int | None = None):
        self.engine, self.model, self.pack, self.gap, self.max_length = engine, model, pack, gap, max_length
        self.longform = None
        self.long = 0
        self.max_samples = getattr(model.encoder, "max_samples", None)
        if pack or self.max_samples is not None:
            self.longform = LongForm(engine, model, tokenizer, vad, pack=pack or None, gap=gap, max_length=max_length)
        self.token2id = tokenizer.token2id

    def __call__(self, wav: torch.Tensor, wav_lens: torch.Tensor, ids: list[str], dialects: list[str]) -> list[str]:
        lens = wav_lens.tolist()
        long = [i for i, n in enumerate(lens) if self.max_samples is not None and n > self.max_samples]
        short = [i for i in range(len(lens)) if i not in long]
        texts = [""] * len(lens)
        for i in long:
            self.long += 1
            segments = self.longform(wav[i, : lens[i]].cpu().numpy(), ids[i], progress=False)
            texts[i] = "".join(s.text for s in segments)
        if not short:
            return texts
        if not self.pack:
            rows = torch.tensor(short, device=wav.device)
            out = self.engine(wav[rows][:, : max(lens[i] for i in short)], wav_lens[rows], [dialects[i] for i in short],
                              [ids[i] for i in short], self.max_length)
            for i, t in zip(short, out.texts):
                texts[i] = t
            return texts
        groups = [[short[j] for j in g] for g in pack_in_order([lens[i] / 16000 for i in short],
                                                                self.longform.window, self.gap)]
        # A window of several varieties has no one variety prompt: the plain one (what packed training used).
        read = read_windows(self.engine, {i: wav[i, : lens[i]].cpu().numpy() for i in short}, groups, self.gap,
                            self.token2id, None, ["+".join(ids[i] for i in g) for g in groups], self.longform.max_len)
        for i, t in read.items():
            texts[i] = t
        return texts

    def describe(self) -> str:
        out = f", {self.longform.describe()} (packed evaluation)" if self.pack else ""
        if self.long:
            out += f", {self.long} cut(s) longer than the encoder's window read long-form"
        return out


def check_bad(bad: list, skip_bad: bool, command: str) -> list[str]:
    """Unreadable items of a batch: an error naming the first, or (``skip_bad``) logged and returned."""
    if bad and not skip_bad:
        raise ValueError(f"{command}: {bad[0].line()}; --skip-bad skips and counts such items")
    for item in bad:
        log.warning("%s: skipped %s", command, item.line())
    return [item.line() for item in bad]


def read_audio_16k(path: str | Path, min_samples: int = 1) -> np.ndarray:
    """Any sample rate / channel count -> float32 mono 16 kHz (clear error for unreadable files)."""
    try:
        with quiet_id3(path):
            audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile's error type varies by failure
        raise ValueError(f"{path}: cannot read audio ({e})") from None
    if audio.size == 0:
        raise ValueError(f"{path}: audio is empty")
    audio = audio.mean(axis=1)
    if not np.isfinite(audio).all():
        raise ValueError(f"{path}: audio contains NaN or inf samples")
    if sr != 16000:
        import soxr

        audio = soxr.resample(audio, sr, 16000).astype(np.float32)
    if len(audio) < min_samples:
        raise ValueError(f"{path}: audio of {len(audio) / 16000:.3f} s is shorter than the encoder's minimum "
                         f"{min_samples / 16000:.3f} s")
    return audio


LONG_FORM = ("auto", "on", "off")


def transcribe(exp_dir: str | Path, files: list[str | Path], mode: str = "ctc_greedy", beam: int = 10,
               checkpoint: str = "latest", ctc_weight: float | None = None, skip_bad: bool = False,
               variety: str | None = None, router: str | Path | None = None, engine: str = "torch",
               long_form: str = "auto", vad: VadSettings | None = None, pack: bool | None = None,
               output_dir: str | Path | None = None, formats: list[str] = (), compute_type: str | None = None,
               progress: bool = True) -> list[str | None]:
    """Transcripts in file order; with ``skip_bad`` an unreadable file gives None (and a logged reason).
    ``variety``: the files' variety label, for a variety-prompted decoder (None = the plain prompt).
    ``router``: each file decoded by the checkpoint its predicted variety is routed to (see :func:`decode`).
    ``long_form``: ``auto`` reads a file longer than the encoder's window (30 s for Whisper) long-form (VAD
    segments, see ``decode/longform.py``) and a shorter one whole; ``on`` always uses the VAD, ``off`` never.
    With ``output_dir``, each file's timed segments are written there in ``formats`` (``decode/outputs.py``)."""
    from speechalign.decode.engines import make_engine
    from speechalign.decode.longform import whole
    from speechalign.decode.outputs import FORMATS, write_outputs

    if long_form not in LONG_FORM:
        raise ValueError(f"--long-form: {long_form!r} is not one of {', '.join(LONG_FORM)}")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"--output-format: unknown format {bad[0]!r}; choose from {', '.join(FORMATS)}")
    if formats and output_dir is None:
        raise ValueError("--output-format needs --output-dir")
    exp_dir = Path(exp_dir)
    cfg, tokenizer, model = load_experiment(exp_dir, checkpoint)
    run = make_engine(engine, exp_dir, checkpoint, model, tokenizer, mode, beam, ctc_weight, router=router,
                      compute_type=compute_type)
    longform = LongForm(run, model, tokenizer, vad, pack, pack_gap(cfg), variety=variety)
    limit = getattr(model.encoder, "max_samples", None) or round(longform.vad.max_segment_s * 16000)
    meta = {"exp_dir": str(exp_dir), "checkpoint": checkpoint, "mode": mode, "engine": engine}
    texts = []
    for path, audio in zip(files, audio_files_16k(files, model.encoder.min_samples, skip_bad)):
        if audio is None:
            texts.append(None)
            continue
        if long_form == "on" or (long_form == "auto" and len(audio) > limit):
            segments = longform(audio, Path(path).name, progress)
            how = longform.describe()
        elif len(audio) > limit:
            raise ValueError(f"{path}: {len(audio) / 16000:.1f} s is longer than the encoder reads at once "
                             f"({limit / 16000:g} s); use --long-form auto or on")
        else:
            segments, how = whole(audio, run, variety), "whole file, one utterance"
        if output_dir is not None:
            write_outputs(segments, Path(path), Path(output_dir), list(formats), {**meta, "segmentation": how})
        texts.append("".join(s.text for s in segments))
    return texts


def audio_files_16k(files: list[str | Path], min_samples: int, skip_bad: bool):
    """Each file's 16 kHz mono audio in order; an unreadable one raises, or with ``skip_bad`` is logged and
    yields None, so callers keep their outputs aligned with the inputs."""
    for path in files:
        try:
            yield read_audio_16k(path, min_samples)
        except ValueError as e:
            if not skip_bad:
                raise
            log.warning("transcribe: skipped %s", e)
            yield None


def score_files(ref: str | Path, hyp: str | Path, groups: str | Path | None, out_dir: str | Path,
                name: str = "external") -> object:
    """Score another system's hypotheses with our normalization and per-dialect grouping."""
    refs, hyps = read_text_file(ref), read_text_file(hyp)
    missing = sorted(set(refs) - set(hyps))
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise ValueError(f"{hyp}: {len(extra)} id(s) not in {ref}, e.g. {extra[:3]}")
    if missing:
        log.warning("%s: %d reference id(s) have no hypothesis, scored as empty output, e.g. %s", hyp, len(missing), missing[:3])
    group_of = {}
    if groups:
        with open(groups, encoding="utf-8") as f:
            group_of = {row[0]: row[1] for row in csv.reader(f, delimiter="\t") if len(row) >= 2}
    utts = [Utterance(k, group_of.get(k, "all"), r, hyps.get(k, "")) for k, r in refs.items()]
    return write_reports(Path(out_dir), name, "score", utts, note=f"ref={ref}, hyp={hyp}")
