"""Decoding engines: a padded batch of audio in, one text per row out, with the CTC posteriors of what was read.

``torch`` is speechalign's own search in any mode. ``ct2`` runs a Whisper experiment's encoder and decoder in
CTranslate2 (the engine faster-whisper deploys): the checkpoint is converted once (``models/ct2_export.py``),
encoded in int8 on CPU (float16 on GPU), and its attention beam search is batched. Both return the CTC
log-probabilities of the encoded input (the experiment's CTC head over the last state), which long-form and
packed decoding use to put each character of a window's text back in time.

:class:`Routing` (``decode --router``) sends each row to the checkpoint its predicted variety is routed to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speechalign.atomic import write_text
from speechalign.decode.batch import (ctc_weight_for, decode_batch, decode_encoded, hyp_text, make_ctc_search)
from speechalign.models.encoders import EncoderOutput, whisper_frames
from speechalign.models.experiment import load_experiment, resolve_weights

log = logging.getLogger("speechalign.decode")
ENGINES = ("torch", "ct2")


@dataclass
class Decoded:
    texts: list[str]
    log_probs: torch.Tensor        # (B, T, V) CTC log-probabilities of the encoded rows
    speech_frames: torch.Tensor    # (B,) frames of each row's own audio (without a 30-s window's padding)
    frame_shift: float             # seconds per frame


class TorchEngine:
    """speechalign's PyTorch decoding of ``mode`` (see :func:`speechalign.decode.batch.decode_batch`)."""

    name = "torch"

    def __init__(self, model, tokenizer, mode: str, beam: int, ctc_weight: float | None = None, lm=None,
                 char_lm=None, device: str = "cpu", force_cpu_search: bool = False, routing: "Routing | None" = None):
        self.model, self.tokenizer, self.mode, self.beam = model, tokenizer, mode, beam
        self.ctc_weight = ctc_weight_for(mode, ctc_weight, model)
        self.ctc_search = make_ctc_search(tokenizer, mode, beam, lm, device, force_cpu_search)
        self.char_lm, self.routing = char_lm, routing

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor, wav_lens: torch.Tensor, dialects: list[str] | None = None,
                 ids: list[str] | None = None, max_len: int | None = None) -> Decoded:
        model = self.model
        enc = model.encode(wav, wav_lens)
        log_probs = model.ctc_log_probs(enc)
        if self.routing is not None:
            hyps = self.routing.decode(model, wav, wav_lens, self.beam, ids or [""] * len(wav), dialects, enc, max_len)
        else:
            hyps = decode_encoded(model, enc, log_probs, self.mode, self.beam, self.ctc_weight, self.tokenizer.decode,
                                  self.ctc_search, self.char_lm, self.tokenizer.encode, dialects, max_len)
        texts = [hyp_text(model, self.tokenizer, self.mode, h) for h in hyps]
        return Decoded(texts, log_probs, enc.speech_lengths, model.encoder.frame_shift)

    def describe(self) -> str:
        search = f", search={self.ctc_search.backend}" if self.ctc_search is not None else ""
        return f"engine=torch{search}"


class Ct2Engine:
    """A Whisper experiment's attention beam search in CTranslate2, batched: the same prompts, no token
    suppressed but what speechalign's decoding suppresses (tokens outside ``model.decoder.train_vocab``)."""

    name = "ct2"

    def __init__(self, exp_dir: Path, checkpoint: str, model, tokenizer, mode: str, beam: int, device: str = "cpu",
                 compute_type: str | None = None, threads: int = 0, routing: "Routing | None" = None):
        from speechalign.decode.whisper_zero_shot import load_whisper
        from speechalign.models.ct2_export import ct2_model
        from speechalign.models.frontend import WhisperLogMel

        if mode != "attention_beam":
            raise ValueError(f"--engine ct2 runs Whisper's attention beam search (--mode attention_beam), not {mode!r}; "
                             "the CTC modes stay on --engine torch")
        if getattr(model.encoder, "length_mode", None) != "pad30" or model.att_vocab is None:
            raise ValueError(f"--engine ct2: {exp_dir} is not a Whisper experiment with Whisper's decoder read in "
                             "30-s windows (model.whisper.length_mode: pad30, model.decoder.pretrained)")
        if routing is not None and routing.router.layer not in (-1, model.encoder.num_layers):
            raise ValueError(f"--engine ct2 --router: the router reads encoder state {routing.router.layer}; "
                             "CTranslate2 gives the last one only (train-router --layer -1)")
        ct2_device = "cuda" if str(device).startswith("cuda") else "cpu"
        self.compute_type = compute_type or ("float16" if ct2_device == "cuda" else "int8")
        self.model, self.tokenizer, self.beam, self.mode, self.routing = model, tokenizer, beam, mode, routing
        self.ct2 = {name: load_whisper(ct2_model(exp_dir, name), ct2_device, self.compute_type, threads)
                    for name in [checkpoint, *(routing.router.targets() if routing else [])]}
        self.checkpoint = checkpoint
        self.mel = WhisperLogMel(model.encoder.hf_config.num_mel_bins)
        allowed = model.decoder.allowed
        self.suppress = [] if allowed is None else (~allowed).nonzero().squeeze(-1).tolist()

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor, wav_lens: torch.Tensor, dialects: list[str] | None = None,
                 ids: list[str] | None = None, max_len: int | None = None) -> Decoded:
        import ctranslate2

        from speechalign.decode.router import MAIN
        from speechalign.decode.whisper_zero_shot import WINDOW

        wav, wav_lens = wav.cpu().float(), wav_lens.cpu()
        if wav.shape[1] > WINDOW:
            raise ValueError(f"--engine ct2: input of {wav.shape[1] / 16000:.1f} s exceeds Whisper's 30-s window")
        # The PyTorch path's own features (pad30: zeros to 30 s, the peak over the real frames).
        mel, _ = self.mel(torch.nn.functional.pad(wav, (0, WINDOW - wav.shape[1])), wav_lens)
        feats = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))
        main = self.ct2[self.checkpoint]
        encoded = main.encode(feats, to_cpu=True)
        last = torch.from_numpy(np.array(encoded)).float()
        speech = whisper_frames(wav_lens)
        enc = EncoderOutput([last], torch.full_like(wav_lens, last.shape[1]), speech.clamp(max=last.shape[1]))
        log_probs = self.model.ctc_log_probs(enc)
        prompts = self.model.prefixes(dialects, len(wav))
        routes = self.routing.route(enc, ids, dialects) if self.routing is not None else [MAIN] * len(wav)
        texts: list[str] = [""] * len(wav)
        for route in sorted(set(routes)):
            rows = [i for i, r in enumerate(routes) if r == route]
            if route == MAIN:
                memory = encoded if len(rows) == len(wav) else ctranslate2.StorageView.from_array(last[rows].numpy())
                engine = main
            else:
                memory = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.array(feats)[rows]))
                engine = self.ct2[route]
            limit = max_len or 200
            # CTranslate2's Whisper generates at most max_length / 2 tokens (measured on whisper-base; openai's
            # own sample_len is n_ctx / 2 = 224): ask for enough, and cut at the PyTorch search's limit.
            results = engine.generate(memory, [prompts[i] for i in rows], beam_size=self.beam,
                                      max_length=min(2 * (limit + max(len(prompts[i]) for i in rows)),
                                                     self.model.decoder.max_len),
                                      suppress_blank=False, suppress_tokens=self.suppress, length_penalty=1.0)
            for i, r in zip(rows, results):
                texts[i] = self.model.att_vocab.decode(r.sequences_ids[0][:limit])
        return Decoded(texts, log_probs, enc.speech_lengths, self.model.encoder.frame_shift)

    def describe(self) -> str:
        return f"engine=ct2 (CTranslate2, compute_type={self.compute_type})"


class Routing:
    """Per-utterance checkpoints for ``decode --router``: the main model encodes the batch, the router reads its
    pooled states, and the rows routed elsewhere are decoded by their own checkpoint (encoder and decoder)."""

    def __init__(self, router, exp_dir: Path, path: Path, device: str, load_models: bool = True):
        self.router, self.path = router, path
        self.models = ({t: load_experiment(exp_dir, t, device)[2] for t in router.targets()} if load_models else {})
        self.rows: list[tuple[str, str, str]] = []   # (id, variety, route) of the set being decoded

    @classmethod
    def open(cls, path: str | Path, exp_dir: Path, checkpoint: str, mode: str, device: str,
             load_models: bool = True) -> "Routing":
        from speechalign.decode.router import VarietyRouter

        if mode != "attention_beam":
            raise ValueError(f"--router: decode mode {mode!r} reads the CTC head, which a routed checkpoint does not "
                             "share with the main one; route attention_beam")
        router = VarietyRouter.load(path)
        if router.checkpoint != checkpoint:
            raise ValueError(f"--router {path}: fitted on the states of checkpoint {router.checkpoint!r}, not "
                             f"--checkpoint {checkpoint!r}")
        router.check_weights(resolve_weights(exp_dir, checkpoint), path)
        return cls(router, exp_dir, Path(path), device, load_models)

    def route(self, enc: EncoderOutput, ids: list[str] | None, dialects: list[str] | None) -> list[str]:
        """Each row's route, recorded for the set's routes file."""
        routes = self.router.route(enc)
        self.rows += list(zip(ids or [""] * len(routes), dialects or ["unknown"] * len(routes), routes))
        return routes

    @torch.no_grad()
    def decode(self, model, wav: torch.Tensor, wav_lens: torch.Tensor, beam: int, ids: list[str],
               dialects: list[str] | None, enc: EncoderOutput | None = None,
               max_len: int | None = None) -> list[list[int]]:
        from speechalign.decode.router import MAIN

        enc = enc if enc is not None else model.encode(wav, wav_lens)
        routes = self.route(enc, ids, dialects)
        hyps: list[list[int] | None] = [None] * len(routes)
        for route in sorted(set(routes)):
            index = [i for i, r in enumerate(routes) if r == route]
            rows = torch.tensor(index, device=wav.device)
            varieties = None if dialects is None else [dialects[i] for i in index]
            if route == MAIN:   # already encoded: decode those rows of the batch's encoding
                sub = enc.rows(rows)
                out = decode_encoded(model, sub, model.ctc_log_probs(sub), "attention_beam", beam, 0.0,
                                     dialects=varieties, max_len=max_len)
            else:
                out = decode_batch(self.models[route], wav[rows], wav_lens[rows], "attention_beam", beam, 0.0,
                                   dialects=varieties, max_len=max_len)
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


def make_engine(engine: str, exp_dir: Path, checkpoint: str, model, tokenizer, mode: str, beam: int,
                ctc_weight: float | None = None, lm=None, char_lm=None, device: str = "cpu",
                force_cpu_search: bool = False, router: str | Path | None = None, compute_type: str | None = None):
    """The engine named ``engine`` (one of :data:`ENGINES`), with its router when one is given."""
    if engine not in ENGINES:
        raise ValueError(f"--engine: unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    routing = (Routing.open(router, exp_dir, checkpoint, mode, device, load_models=engine == "torch")
               if router is not None else None)
    if engine == "ct2":
        if lm is not None:
            raise ValueError("--engine ct2 takes no --lm (CTranslate2 runs Whisper's own beam search)")
        return Ct2Engine(exp_dir, checkpoint, model, tokenizer, mode, beam, device, compute_type, routing=routing)
    return TorchEngine(model, tokenizer, mode, beam, ctc_weight, lm, char_lm, device, force_cpu_search, routing)
