"""Joint CTC/attention beam search when the two branches have different vocabularies: Whisper's
byte-level BPE decoder proposes and scores tokens, the character CTC head scores the characters they
spell (ESPnet's one-pass joint decoding, Watanabe et al. 2017, across tokenizations).

A BPE token may spell part of a character (a byte of a multi-byte UTF-8 sequence), one character, or
several: the CTC prefix score moves only when characters complete, by as many extensions as the token
completed, and a hypothesis may end only on a whole character."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from speechalign.decode.attention import MAX_TOKENS_PER_FRAME, _ctc_prefix_extend, _require_decoder
from speechalign.models.asr import ASRModel
from speechalign.text.tokenizer import SPECIALS

INCOMPLETE = "\ufffd"   # what the byte-level decoder prints for bytes that do not yet form a character


@dataclass
class _Hyp:
    tokens: tuple[int, ...]      # decoder vocabulary (BPE), without the prompt
    chars: tuple[int, ...]       # CTC ids of the complete characters those tokens spell
    score: float                 # (1 - w) * sum log P_att + w * psi
    psi: float                   # CTC prefix log-probability of ``chars``
    r: torch.Tensor              # (T, 2) CTC forward variables of ``chars`` [non-blank, blank]
    pending: bool                # the tokens end inside a character


def _spelled(decode: Callable, from_text: Callable, tokens: tuple[int, ...]) -> tuple[tuple[int, ...], bool]:
    text = decode(list(tokens))
    whole = text.rstrip(INCOMPLETE)
    return tuple(from_text(whole)), len(whole) < len(text)


def _ctc_tokens(model: ASRModel, log_probs: torch.Tensor, to_text: Callable, propose: float, blank: int) -> list[int]:
    """The first BPE token of every character CTC finds likely somewhere (posterior > ``propose``): with
    the decoder's pre-beam alone, a character the decoder under-ranks is never proposed. The tokenizer's
    specials are not characters (``<unk>`` would propose the BPE token of "<")."""
    ids = (log_probs.max(0).values > math.log(propose)).nonzero().squeeze(-1).tolist()
    out = set()
    allowed = model.decoder.allowed
    for i in ids:
        text = to_text([i]) if i != blank and i >= len(SPECIALS) else ""
        bpe = model.att_vocab.encode(text) if text else []
        if bpe and (allowed is None or bool(allowed[bpe[0]])):
            out.add(bpe[0])
    return sorted(out)


@torch.no_grad()
def joint_beam_bpe(model: ASRModel, log_probs: torch.Tensor, memory: torch.Tensor, beam: int, ctc_weight: float,
                   to_text: Callable, from_text: Callable, blank: int = 0, max_len: int = 200,
                   ctc_propose: float = 0.05, prefix: list[int] | None = None) -> list[int]:
    """Best hypothesis (decoder-vocabulary ids) of a label-synchronous beam search scoring
    (1 - w) * log P_att + w * log P_ctc(characters spelled). ``to_text``/``from_text``: the CTC
    tokenizer's decode and encode; ``prefix``: the decoder's (default ``model.att_prefix``)."""
    _require_decoder(model, "joint_beam")
    device, eos, prompt = memory.device, model.att_eos, list(prefix or model.att_prefix)
    T = log_probs.shape[0]
    max_len = min(max_len, model.decoder.max_len - len(prompt) - 1, 10 + int(MAX_TOKENS_PER_FRAME * memory.shape[0]))
    decode = model.att_vocab.decode
    init_r = torch.full((T, 2), -math.inf, device=device)
    init_r[:, 1] = torch.cumsum(log_probs[:, blank], 0)
    hyps = [_Hyp((), (), 0.0, 0.0, init_r, False)]
    ended: list[tuple[tuple[int, ...], float]] = []
    mem_kv = model.decoder.memory_kv(memory.unsqueeze(0))
    no_pad = torch.zeros(1, memory.shape[0], dtype=torch.bool, device=device)
    pre_beam = int(1.5 * beam) + 1
    extra = _ctc_tokens(model, log_probs, to_text, ctc_propose, blank) if ctc_propose < 1.0 else []
    for _ in range(max_len):
        inp = torch.tensor([prompt + list(h.tokens) for h in hyps], device=device)
        kv = [(k.expand(len(hyps), -1, -1, -1), v.expand(len(hyps), -1, -1, -1)) for k, v in mem_kv]
        att = model.decoder.next_token_logits(inp, kv, no_pad.expand(len(hyps), -1)).float().log_softmax(-1)
        pairs = []                                   # (hyp index, token)
        for i, row in enumerate(att):
            cands = set(torch.topk(row, min(pre_beam, row.numel())).indices.tolist()) | set(extra) | {eos}
            pairs += [(i, c) for c in sorted(cands) if row[c] > -math.inf]
        candidates = _score(pairs, hyps, att, log_probs, ctc_weight, decode, from_text, eos, init_r, blank)
        candidates.sort(key=lambda c: c[0], reverse=True)
        hyps = []
        for score, hyp, token in candidates[:beam]:
            if token == eos:
                ended.append((hyp.tokens, score))
            else:
                hyps.append(hyp)
        best_ended = max((s for _, s in ended), default=-math.inf)
        # Scores only fall as tokens are added: once beam hypotheses have ended, nothing running can win.
        if not hyps or (len(ended) >= beam and max(h.score for h in hyps) < best_ended):
            break
    if not ended:
        ended = [(h.tokens, h.score) for h in hyps] or [((), 0.0)]
    return list(max(ended, key=lambda x: x[1])[0])


def _score(pairs, hyps, att, log_probs, w, decode, from_text, eos, init_r, blank) -> list[tuple[float, _Hyp, int]]:
    """Each (hyp, token) pair's joint score and extended hypothesis. CTC extensions of all pairs run
    batched, one character position at a time."""
    out: list[tuple[float, _Hyp, int] | None] = [None] * len(pairs)
    # (pair index, attention step score, tokens, chars, pending, start chars, start r, start psi, chars to add)
    jobs = []
    for n, (i, tok) in enumerate(pairs):
        h = hyps[i]
        step = (1 - w) * float(att[i, tok])
        if tok == eos:
            if not h.pending:
                psi_end = float(torch.logaddexp(h.r[-1, 0], h.r[-1, 1]))
                out[n] = (h.score + step + w * (psi_end - h.psi), h, eos)
            continue
        tokens = h.tokens + (tok,)
        chars, pending = _spelled(decode, from_text, tokens)
        if chars[: len(h.chars)] == h.chars:
            jobs.append((n, step, tokens, chars, pending, h.chars, h.r, h.psi, chars[len(h.chars):]))
        else:                                     # a token that re-spells earlier text: score from the start
            jobs.append((n, step, tokens, chars, pending, (), init_r, 0.0, chars))
    states = {n: (prefix, r, psi) for n, _, _, _, _, prefix, r, psi, _ in jobs}
    todo = {n: list(add) for n, *_, add in jobs}
    while any(todo.values()):
        batch = [n for n, add in todo.items() if add]
        last = torch.tensor([states[n][0][-1] if states[n][0] else -1 for n in batch])
        cand = torch.tensor([todo[n][0] for n in batch])
        r_prev = torch.stack([states[n][1] for n in batch], dim=-1)
        psi, r = _ctc_prefix_extend(log_probs, r_prev, last, cand, blank)
        for j, n in enumerate(batch):
            states[n] = (states[n][0] + (todo[n].pop(0),), r[:, :, j], float(psi[j]))
    for n, step, tokens, chars, pending, *_ in jobs:
        h = hyps[pairs[n][0]]
        _, r, psi = states[n]
        score = h.score + step + w * (psi - h.psi)
        out[n] = (score, _Hyp(tokens, chars, score, psi, r, pending), tokens[-1])
    return [c for c in out if c is not None and c[0] > -math.inf]
