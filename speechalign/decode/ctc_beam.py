"""Batched CTC prefix beam search through torchaudio's decoders: flashlight-text's lexicon-free
decoder on CPU (optionally fused with a character n-gram LM) and ``cuda_ctc_decoder`` on GPU.

Lexicon-free over the character vocabulary: every token is a "word" for the LM, so the LM is queried
once per emitted character. Flashlight starts (and ends) each hypothesis on a silence token, and a
first emission equal to it would be taken as a CTC repeat; ``<sos/eos>`` plays that role because CTC
never emits it (its column is masked out). ``log_add`` merges the alignments of one prefix by summing
them, as :func:`speechalign.decode.ctc.ctc_prefix_beam` (the Python reference) does. Flashlight's
lexicon-free decoder has no per-word bonus, so a non-zero word score goes through a small Python LM
wrapper (slower: one Python call per scored character).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from speechalign.decode.lm import LN10, CharLM, LMOptions
from speechalign.text.tokenizer import SOS_EOS, SPECIALS

log = logging.getLogger("speechalign.decode")
MASK = -1e30  # finite: flashlight adds scores, and -inf - -inf would be NaN


@dataclass
class Hyp:
    tokens: tuple[int, ...]
    score: float        # what the search ranked by: ctc + lm_weight * lm + word_score * len
    ctc: float          # CTC log-probability of the prefix (summed over alignments kept in the beam)
    lm: float = 0.0     # ln P_lm(tokens + </s>), 0 without an LM


def _bonus_lm(lm: CharLM, weight: float, word_score: float):
    """An LM for flashlight returning weight * ln P + word_score per character (decoder lm_weight 1)."""
    from torchaudio.models.decoder import CTCDecoderLM

    class BonusLM(CTCDecoderLM):
        def start(self, start_with_nothing):
            return lm.kenlm.start(start_with_nothing)

        def score(self, state, token):
            nxt, lp10 = lm.kenlm.score(state, token)
            return nxt, weight * LN10 * lp10 + word_score

        def finish(self, state):
            nxt, lp10 = lm.kenlm.finish(state)
            return nxt, weight * LN10 * lp10

    return BonusLM()


def select_backend(device: torch.device | str, lm: LMOptions | None, force_cpu: bool = False) -> str:
    """``cuda`` (torchaudio's cuda_ctc_decoder) for CUDA log-probs without an LM, else ``cpu``
    (flashlight): the GPU decoder has no LM fusion."""
    if force_cpu or lm is not None or torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return "cpu"
    return "cuda"


class CtcBeamSearch:
    """n-best CTC beam search for padded (B, T, V) log-probabilities; build once, call per batch."""

    def __init__(self, tokens: list[str], beam: int, nbest: int = 1, lm: LMOptions | None = None,
                 device: torch.device | str = "cpu", force_cpu: bool = False, beam_threshold: float = 50.0):
        if list(tokens[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"CTC beam search: tokens must start with {SPECIALS}, got {tokens[:3]}")
        self.tokens, self.beam, self.nbest, self.lm_options = list(tokens), beam, max(nbest, 1), lm
        self.sil = self.tokens.index(SOS_EOS)
        self.backend = select_backend(device, lm, force_cpu)
        self.char_lm = CharLM(lm.path, self.tokens) if lm is not None else None
        if self.backend == "cuda":
            from torchaudio.models.decoder import cuda_ctc_decoder

            # blank_skip_threshold 1.0 keeps every frame (the default skips frames with p(blank) > 0.95).
            self.decoder = cuda_ctc_decoder(self.tokens, nbest=self.nbest, beam_size=beam, blank_skip_threshold=1.0)
            return
        from torchaudio.models.decoder import ctc_decoder

        if lm is None:
            fl_lm, weight = None, 0.0
        elif lm.word_score == 0.0:
            fl_lm, weight = self.char_lm.kenlm, lm.weight * LN10   # flashlight's KenLM scores in log10
        else:
            fl_lm, weight = _bonus_lm(self.char_lm, lm.weight, lm.word_score), 1.0
        # beam_size_token = beam: each frame's `beam` most likely tokens, as the Python reference prunes.
        self.decoder = ctc_decoder(lexicon=None, tokens=self.tokens, lm=fl_lm, nbest=self.nbest, beam_size=beam,
                                   beam_size_token=min(beam, len(self.tokens)), beam_threshold=beam_threshold,
                                   lm_weight=weight, log_add=True, blank_token=self.tokens[0], sil_token=SOS_EOS,
                                   unk_word=self.tokens[1])

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hyp]]:
        """n-best per utterance, best first (ranked by the fused score)."""
        if self.backend == "cuda":
            results = self.decoder(log_probs.contiguous(), lengths.to(device=log_probs.device, dtype=torch.int32))
            return [[Hyp(tuple(int(t) for t in h.tokens if t != self.sil), float(h.score), float(h.score))
                     for h in hyps] for hyps in results]
        emissions = log_probs.detach().float().cpu().clone()
        emissions[:, :, self.sil] = MASK
        results = self.decoder(emissions.contiguous(), lengths.cpu().to(torch.int32))
        out = []
        for hyps in results:
            nbest = []
            for h in hyps:
                toks = tuple(int(t) for t in h.tokens.tolist() if t != self.sil)
                lm = self.char_lm.sequence_score(toks) if self.char_lm is not None else 0.0
                fused = (self.lm_options.weight * lm + self.lm_options.word_score * len(toks)) if self.char_lm else 0.0
                nbest.append(Hyp(toks, float(h.score), float(h.score) - fused, lm))
            out.append(nbest)
        return out
