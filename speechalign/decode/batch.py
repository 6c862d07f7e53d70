"""One padded batch decoded in any mode: the searches over an encoder's output, in the model's vocabulary."""

from __future__ import annotations

import torch

from speechalign.decode import ATTENTION_MODES, MODES
from speechalign.decode.attention import attention_beam, attention_rescoring, joint_beam
from speechalign.decode.ctc import ctc_greedy, ctc_prefix_beam
from speechalign.decode.ctc_beam import CtcBeamSearch
from speechalign.decode.joint_bpe import joint_beam_bpe
from speechalign.decode.lm import CharLM, LMOptions


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
                 dialects: list[str] | None = None, max_len: int | None = None) -> list[list[int]]:
    """Token ids for each utterance of a padded batch (encoder run once for the whole batch); see
    :func:`hyp_text` for their vocabulary. ``to_text`` (CTC ids -> text) is needed by
    attention_rescoring and joint_beam with a BPE decoder, joint_beam also ``from_text`` (text -> CTC
    ids). ``ctc_search`` (see :func:`make_ctc_search`) is the batched
    library beam search for ctc_prefix_beam and the n-best of attention_rescoring; without it both use
    the Python reference prefix search. ``lm`` fuses a character LM into joint_beam (rescoring gets it
    through ``ctc_search``'s n-best LM scores). ``dialects``: the variety labels a variety-prompted decoder
    is prompted with (``model.decoder.prompt=variety``; None = the plain prompt). ``max_len``: most tokens
    attention_beam and joint_beam output per row (default 200, joint_beam over characters: the frame count; a
    packed 30-s window of several utterances needs more)."""
    if mode not in MODES:
        raise ValueError(f"unknown decode mode {mode!r}; choose from {MODES}")
    if mode in ATTENTION_MODES and model.decoder is None:
        raise ValueError(f"decode mode {mode!r} needs an attention decoder, but this model has none "
                         "(trained with model.decoder.num_layers: 0); use ctc_greedy or ctc_prefix_beam")
    enc = model.encode(wav, wav_lens)
    log_probs = model.ctc_log_probs(enc)
    return decode_encoded(model, enc, log_probs, mode, beam, ctc_weight, to_text, ctc_search, lm, from_text,
                          dialects, max_len)


def decode_encoded(model, enc, log_probs: torch.Tensor, mode: str, beam: int, ctc_weight: float, to_text=None,
                   ctc_search: CtcBeamSearch | None = None,
                   lm: tuple[CharLM, LMOptions] | None = None, from_text=None,
                   dialects: list[str] | None = None, max_len: int | None = None) -> list[list[int]]:
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
            out.append(attention_beam(model, enc.last[i, :n], beam, prefix=prefixes[i], max_len=max_len or 200))
        elif model.shares_ctc_vocab:
            out.append(joint_beam(model, lp, enc.last[i, :n], beam, ctc_weight, max_len=max_len, lm=lm))
        else:
            out.append(joint_beam_bpe(model, lp, enc.last[i, :n], beam, ctc_weight, to_text, from_text,
                                      max_len=max_len or 200, prefix=prefixes[i]))
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
