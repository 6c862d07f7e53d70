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

from speechalign.atomic import write_text
from speechalign.data.audio import quiet_id3
from speechalign.decode import ATTENTION_MODES, MODES
from speechalign.data.dataset import collate_audio, eval_loader
from speechalign.data.manifest import check_unique_ids, open_cuts
from speechalign.decode.attention import attention_beam, attention_rescoring, joint_beam
from speechalign.decode.ctc import ctc_greedy, ctc_prefix_beam
from speechalign.decode.ctc_beam import CtcBeamSearch
from speechalign.decode.joint_bpe import joint_beam_bpe
from speechalign.decode.lm import CharLM, LMOptions
from speechalign.decode.report import Utterance, lm_effect, read_text_file, report_set, write_reports
from speechalign.models.experiment import load_experiment, resolve_weights

log = logging.getLogger("speechalign.decode")


def supported_modes(model) -> list[str]:
    """The decode modes this model can run. A decoder trained on Mandarin translations only decodes
    alone: its output is not the CTC transcript that rescoring or joint search would score."""
    if model.decoder is None:
        return list(MODES[:2])
    if translates(model):
        return ["ctc_greedy", "ctc_prefix_beam", "attention_beam"]
    return list(MODES)


def translates(model) -> bool:
    """True when the attention branch learned Mandarin translations (model.decoder.targets=translation)."""
    return getattr(model, "att_targets", "transcript") == "translation"


# Decode-time CTC weight when none is given, from dev sweeps of the earlier 1,700-step demo model (bench/joint_beam.py,
# decode-sweep; bench/RESULTS.md): rescoring only re-ranks CTC's n-best, while a label-synchronous search that a
# small decoder steers needs CTC to lead (joint_beam dev CER 33.6 % at 0.5, 30.1 % at 0.7, 31.8 % at 0.9).
DEFAULT_CTC_WEIGHT = {"attention_rescoring": 0.5, "joint_beam": 0.7}
# With Whisper's pretrained decoder the decoder leads: a half-dev sweep of the goo-gi recipe at step 400
# (egs/goo-gi/README.md) gave joint_beam 63.98 % at CTC weight 0.1 and 67.91 % at 0.3 (attention_beam 68.52 %).
DEFAULT_CTC_WEIGHT_BPE = {"attention_rescoring": 0.5, "joint_beam": 0.1}


def ctc_weight_for(mode: str, ctc_weight: float | None, model=None) -> float:
    """The CTC weight given, or the mode's default for this model's kind of decoder."""
    if ctc_weight is not None:
        return ctc_weight
    table = DEFAULT_CTC_WEIGHT if model is None or model.shares_ctc_vocab else DEFAULT_CTC_WEIGHT_BPE
    return table.get(mode, 0.5)


def hyp_text(model, tokenizer, mode: str, ids: list[int]) -> str:
    """Text of a hypothesis: attention_beam and joint_beam ids are in the decoder's vocabulary (maybe
    Whisper BPE)."""
    if mode in ("attention_beam", "joint_beam") and not model.shares_ctc_vocab:
        return model.att_vocab.decode(ids)
    return tokenizer.decode(ids)


@torch.no_grad()
def decode_batch(model, wav: torch.Tensor, wav_lens: torch.Tensor, mode: str, beam: int,
                 ctc_weight: float, to_text=None, ctc_search: CtcBeamSearch | None = None,
                 lm: tuple[CharLM, LMOptions] | None = None, from_text=None,
                 dialects: list[str] | None = None) -> list[list[int]]:
    """Token ids for each utterance of a padded batch (encoder run once for the whole batch); see
    :func:`hyp_text` for their vocabulary. ``to_text`` (CTC ids -> text) is needed by
    attention_rescoring and joint_beam with a BPE decoder, joint_beam also ``from_text`` (text -> CTC
    ids). ``ctc_search`` (see :func:`make_ctc_search`) is the batched
    library beam search for ctc_prefix_beam and the n-best of attention_rescoring; without it both use
    the Python reference prefix search. ``lm`` fuses a character LM into joint_beam (rescoring gets it
    through ``ctc_search``'s n-best LM scores). ``dialects``: the variety labels a variety-prompted decoder
    is prompted with (``model.decoder.prompt=variety``; None = the plain prompt)."""
    if mode not in MODES:
        raise ValueError(f"unknown decode mode {mode!r}; choose from {MODES}")
    if mode in ATTENTION_MODES and model.decoder is None:
        raise ValueError(f"decode mode {mode!r} needs an attention decoder, but this model has none "
                         "(trained with model.decoder.num_layers: 0); use ctc_greedy or ctc_prefix_beam")
    enc = model.encode(wav, wav_lens)
    log_probs = model.ctc_log_probs(enc)
    return decode_encoded(model, enc, log_probs, mode, beam, ctc_weight, to_text, ctc_search, lm, from_text,
                          dialects)


def decode_encoded(model, enc, log_probs: torch.Tensor, mode: str, beam: int, ctc_weight: float, to_text=None,
                   ctc_search: CtcBeamSearch | None = None,
                   lm: tuple[CharLM, LMOptions] | None = None, from_text=None,
                   dialects: list[str] | None = None) -> list[list[int]]:
    """:func:`decode_batch` after the encoder (sweeps decode one encoding many times)."""
    if mode == "joint_beam" and not model.shares_ctc_vocab and (to_text is None or from_text is None or lm):
        raise ValueError("joint_beam with a BPE decoder needs to_text and from_text (the CTC tokenizer's decode "
                         "and encode) and takes no character LM")
    if mode == "ctc_greedy":
        return ctc_greedy(log_probs, enc.lengths)
    # CTC searches read the utterance's own frames: in a 30-s window (whisper pad30) the rest is padding, where a
    # trained head emits blank, and a search over it costs up to 1,500 frames per step; the decoder reads it all.
    speech = enc.speech_lengths
    nbest = None
    if ctc_search is not None and mode in ("ctc_prefix_beam", "attention_rescoring"):
        nbest = ctc_search(log_probs, speech)
        if mode == "ctc_prefix_beam":
            return [list(hyps[0].tokens) if hyps else [] for hyps in nbest]
    out = []
    prefixes = model.prefixes(dialects, len(enc.lengths)) if model.decoder is not None else None
    for i, (n, m) in enumerate(zip(enc.lengths.tolist(), speech.tolist())):
        lp = log_probs[i, :m]
        if mode == "ctc_prefix_beam":
            out.append(list(ctc_prefix_beam(lp.cpu().numpy(), beam)[0][0]))
        elif mode == "attention_rescoring":
            out.append(attention_rescoring(model, lp, enc.last[i, :n], beam, ctc_weight, to_text,
                                           nbest=None if nbest is None else nbest[i],
                                           lm=None if ctc_search is None else ctc_search.lm_options,
                                           prefix=prefixes[i]))
        elif mode == "attention_beam":
            out.append(attention_beam(model, enc.last[i, :n], beam, prefix=prefixes[i]))
        elif model.shares_ctc_vocab:
            out.append(joint_beam(model, lp, enc.last[i, :n], beam, ctc_weight, lm=lm))
        else:
            out.append(joint_beam_bpe(model, lp, enc.last[i, :n], beam, ctc_weight, to_text, from_text,
                                      prefix=prefixes[i]))
    return out


def make_ctc_search(tokenizer, mode: str, beam: int, lm: LMOptions | None, device: str = "cpu",
                    force_cpu: bool = False) -> CtcBeamSearch | None:
    """The library beam search a mode needs (n-best of max(beam, 2) for rescoring), or None."""
    if mode not in ("ctc_prefix_beam", "attention_rescoring"):
        return None
    nbest = 1 if mode == "ctc_prefix_beam" else max(beam, 2)
    return CtcBeamSearch(tokenizer.tokens, max(beam, 2), nbest=nbest, lm=lm, device=device, force_cpu=force_cpu)


def mode_label(mode: str, lm: LMOptions | None) -> str:
    """Report file stem part: an LM-fused decode never overwrites the plain one."""
    return mode if lm is None else f"{mode}+lm"


def decode(exp_dir: str | Path, cuts: list[str | Path], mode: str = "ctc_greedy", beam: int = 10,
           checkpoint: str = "latest", ctc_weight: float | None = None, max_duration: float = 120.0,
           device: str = "cpu", skip_bad: bool = False, lm: LMOptions | None = None,
           force_cpu_search: bool = False, router: str | Path | None = None) -> dict[str, object]:
    """Decode each manifest and write reports to ``<exp>/decode/<checkpoint>/``; returns scorers.
    An unreadable utterance is an error naming its file, or with ``skip_bad`` a counted, listed skip.
    ``lm`` fuses a character n-gram into ctc_prefix_beam, attention_rescoring and joint_beam; the
    beam search runs on the GPU (torchaudio's cuda_ctc_decoder) for CUDA without an LM, unless
    ``force_cpu_search``. ``router`` (a ``train-router`` file of this checkpoint) decodes each utterance with the
    checkpoint its variety is routed to (attention_beam only); reports get ``+route`` in their names."""
    exp_dir = Path(exp_dir)
    for path in cuts:   # each manifest is a set of its own: its recogs and CER need unique ids
        check_unique_ids(path)
    cfg, tokenizer, model = load_experiment(exp_dir, checkpoint, device)
    ctc_weight = ctc_weight_for(mode, ctc_weight, model)
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
    ctc_search = make_ctc_search(tokenizer, mode, beam, lm, device, force_cpu_search)
    char_lm = (CharLM(lm.path, tokenizer.tokens), lm) if lm is not None and mode == "joint_beam" else None
    routing = Routing.open(router, exp_dir, checkpoint, mode, device) if router is not None else None
    label = mode_label(mode, lm) + ("+route" if routing else "")
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
            if routing:
                hyps = routing.decode(model, batch.wav.to(device), batch.wav_lens.to(device), beam, batch.ids,
                                      batch.dialects)
            else:
                hyps = decode_batch(model, batch.wav.to(device), batch.wav_lens.to(device), mode, beam, ctc_weight,
                                    tokenizer.decode, ctc_search, char_lm, tokenizer.encode, batch.dialects)
            audio += float(batch.wav_lens.sum()) / 16000
            # A translating decoder is scored against the Mandarin sentence (BLEU/chrF below, CER beside it).
            refs = [t or "" for t in batch.translations] if translation else batch.texts
            utts += [Utterance(i, d, r, hyp_text(model, tokenizer, mode, h))
                     for i, d, r, h in zip(batch.ids, batch.dialects, refs, hyps)]
        rtf = (time.perf_counter() - start) / max(audio, 1e-9)
        note = f", skipped {len(skipped)} unreadable: {'; '.join(skipped[:3])}" if skipped else ""
        search = f", search={ctc_search.backend}" if ctc_search is not None else ""
        fusion = f", {lm.describe()}" if lm is not None else ", no LM"
        weight = f", ctc_weight={ctc_weight:g}" if mode in ("attention_rescoring", "joint_beam") else ""
        task = ", references=Mandarin translations (dialect speech -> Mandarin text; not ASR-only)" if translation else ""
        if routing:
            task += f", {routing.report(out_dir / f'routes-{set_name}-{label}.tsv')}"
        if mode in ATTENTION_MODES and model.prompt == "variety":
            task += ", decoder prompted with the cut's variety label (model.decoder.prompt=variety)"
        results[set_name] = report_set(out_dir, set_name, label, utts, rtf,
                                       f"checkpoint={checkpoint}, beam={beam}{weight}{fusion}{search}, "
                                       f"RTF={rtf:.4f}{note}{task}")
        if translation:
            from speechalign.decode.translation import score_translation

            score_translation(path, recogs=out_dir / f"recogs-{set_name}-{label}.txt")
    if lm is not None and (effect := lm_effect(out_dir)) is not None:
        log.info("without and with the LM: %s", effect)
    return results


class Routing:
    """Per-utterance checkpoints for ``decode --router``: the main model encodes the batch, the router reads its
    pooled states, and the rows routed elsewhere are decoded by their own checkpoint (encoder and decoder)."""

    def __init__(self, router, models: dict, path: Path):
        self.router, self.models, self.path = router, models, path
        self.rows: list[tuple[str, str, str]] = []   # (id, variety, route) of the set being decoded

    @classmethod
    def open(cls, path: str | Path, exp_dir: Path, checkpoint: str, mode: str, device: str) -> "Routing":
        from speechalign.decode.router import VarietyRouter

        if mode != "attention_beam":
            raise ValueError(f"--router: decode mode {mode!r} reads the CTC head, which a routed checkpoint does not "
                             "share with the main one; route attention_beam")
        router = VarietyRouter.load(path)
        if router.checkpoint != checkpoint:
            raise ValueError(f"--router {path}: fitted on the states of checkpoint {router.checkpoint!r}, not "
                             f"--checkpoint {checkpoint!r}")
        router.check_weights(resolve_weights(exp_dir, checkpoint), path)
        models = {t: load_experiment(exp_dir, t, device)[2] for t in router.targets()}
        return cls(router, models, Path(path))

    @torch.no_grad()
    def decode(self, model, wav: torch.Tensor, wav_lens: torch.Tensor, beam: int, ids: list[str],
               dialects: list[str]) -> list[list[int]]:
        from speechalign.decode.router import MAIN

        enc = model.encode(wav, wav_lens)
        routes = self.router.route(enc)
        self.rows += list(zip(ids, dialects, routes))
        hyps: list[list[int] | None] = [None] * len(routes)
        for route in sorted(set(routes)):
            index = [i for i, r in enumerate(routes) if r == route]
            rows, varieties = torch.tensor(index, device=wav.device), [dialects[i] for i in index]
            if route == MAIN:   # already encoded: decode those rows of the batch's encoding
                sub = enc.rows(rows)
                out = decode_encoded(model, sub, model.ctc_log_probs(sub), "attention_beam", beam, 0.0,
                                     dialects=varieties)
            else:
                out = decode_batch(self.models[route], wav[rows], wav_lens[rows], "attention_beam", beam, 0.0,
                                   dialects=varieties)
            for i, h in zip(index, out):
                hyps[i] = h
        return hyps

    def report(self, path: Path) -> str:
        """Write the set's routes (id, variety, route) and return the report line; starts the next set afresh."""
        from speechalign.decode.router import MAIN, routed_shares

        write_text(path, "id\tvariety\troute\n" + "".join(f"{i}\t{v}\t{r}\n" for i, v, r in self.rows))
        shares = routed_shares([r for _, _, r in self.rows], [v for _, v, _ in self.rows])
        self.rows = []
        moved = "; ".join(f"{v} {sum(n for r, n in c.items() if r != MAIN)}/{sum(c.values())}"
                          for v, c in shares.items())
        log.info("routed away from the main checkpoint, per variety: %s (%s)", moved, path.name)
        return (f"routed by {self.path.name} ({', '.join(f'{k} -> {t}' for k, t in self.router.routes.items())}; "
                f"utterances routed away per variety: {moved})")


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


def transcribe(exp_dir: str | Path, files: list[str | Path], mode: str = "ctc_greedy", beam: int = 10,
               checkpoint: str = "latest", ctc_weight: float | None = None, skip_bad: bool = False,
               variety: str | None = None, router: str | Path | None = None) -> list[str | None]:
    """Transcripts in file order; with ``skip_bad`` an unreadable file gives None (and a logged reason).
    ``variety``: the files' variety label, for a variety-prompted decoder (None = the plain prompt).
    ``router``: each file decoded by the checkpoint its predicted variety is routed to (see :func:`decode`)."""
    _, tokenizer, model = load_experiment(exp_dir, checkpoint)
    routing = Routing.open(router, Path(exp_dir), checkpoint, mode, "cpu") if router is not None else None
    ctc_weight = ctc_weight_for(mode, ctc_weight, model)
    ctc_search = make_ctc_search(tokenizer, mode, beam, None)
    texts = []
    for audio in audio_files_16k(files, model.encoder.min_samples, skip_bad):
        if audio is None:
            texts.append(None)
            continue
        wav, lens = collate_audio([audio])
        if routing:
            ids = routing.decode(model, wav, lens, beam, [""], [variety or "unknown"])[0]
        else:
            ids = decode_batch(model, wav, lens, mode, beam, ctc_weight, tokenizer.decode, ctc_search,
                               from_text=tokenizer.encode, dialects=None if variety is None else [variety])[0]
        texts.append(hyp_text(model, tokenizer, mode, ids))
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
