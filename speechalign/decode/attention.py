"""Decoding with the attention decoder: n-best rescoring (WeNet) and joint CTC/attention beam
search (ESPnet-style, label synchronous, CTC prefix scores computed for all candidates at once)."""

from __future__ import annotations

import math

import torch

from speechalign.decode.ctc import ctc_prefix_beam
from speechalign.decode.ctc_beam import Hyp
from speechalign.decode.lm import CharLM, LMOptions
from speechalign.models.asr import ASRModel


def _require_decoder(model: ASRModel, mode: str) -> None:
    if model.decoder is None:
        raise ValueError(f"decode mode {mode!r} needs an attention decoder, but this model has none "
                         "(trained with model.decoder.num_layers: 0); use ctc_greedy or ctc_prefix_beam")


@torch.no_grad()
def attention_scores(model: ASRModel, memory: torch.Tensor, hyps: list[tuple[int, ...]],
                     prefix: list[int] | None = None) -> torch.Tensor:
    """Teacher-forced log P_att(hyp + <eos>) for each hypothesis (in the decoder's vocabulary) over one
    utterance's memory (T, D), after ``prefix`` (default ``model.att_prefix``)."""
    prefixes = [prefix] * len(hyps) if prefix else None
    inp, gold, token_pad = model.teacher_forcing([list(h) for h in hyps], memory.device, prefixes)
    mem = memory.unsqueeze(0).expand(len(hyps), -1, -1)
    pad = torch.zeros(mem.shape[:2], dtype=torch.bool, device=memory.device)
    logp = model.decoder(inp, mem, pad, token_pad).float().log_softmax(-1)
    picked = logp.gather(-1, gold.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    # where, not a product: a padded position's placeholder token may be one a restricted decoder cannot
    # output (log-prob -inf), and -inf * 0 is NaN, which would make every hypothesis tie
    return torch.where(gold != -1, picked, torch.zeros_like(picked)).sum(-1)


def attention_rescoring(model: ASRModel, log_probs: torch.Tensor, memory: torch.Tensor, beam: int,
                        ctc_weight: float, to_text=None, nbest: list | None = None,
                        lm: LMOptions | None = None, prefix: list[int] | None = None) -> list[int]:
    """n-best from CTC prefix beam search, rescored: attention + ctc_weight * ctc (as in WeNet), plus
    lm.weight * ln P_lm + lm.word_score * length when the n-best came from an LM-fused search. A BPE
    decoder scores each hypothesis's text (``to_text`` maps CTC ids to it) in its own vocabulary.
    ``nbest``: this utterance's :class:`~speechalign.decode.ctc_beam.Hyp` list from the batched library
    search; without it the Python reference prefix search makes one."""
    _require_decoder(model, "attention_rescoring")
    if nbest is None:
        nbest = [Hyp(h, s, s) for h, s in ctc_prefix_beam(log_probs.cpu().numpy(), max(beam, 2))]
    if not nbest:
        return []
    hyps = [h.tokens for h in nbest]
    if not model.shares_ctc_vocab:
        if to_text is None:
            raise ValueError("attention_rescoring with a BPE decoder needs to_text (the CTC tokenizer's decode)")
        hyps = [model.att_vocab.encode(to_text(list(h))) for h in hyps]
    att = attention_scores(model, memory, hyps, prefix)
    scores = [float(a) + ctc_weight * h.ctc for a, h in zip(att, nbest)]
    if lm is not None:
        scores = [s + lm.weight * h.lm + lm.word_score * len(h.tokens) for s, h in zip(scores, nbest)]
    return list(nbest[max(range(len(scores)), key=scores.__getitem__)].tokens)


def _ctc_prefix_extend(log_probs: torch.Tensor, r_prev: torch.Tensor, last: torch.Tensor,
                       cands: torch.Tensor, blank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC prefix scores of ``prefix_n + cands[n]`` for N (prefix, token) pairs at once
    (Watanabe et al., 2017).

    log_probs (T, V); r_prev (T, 2, N) forward variables [non-blank, blank] of each prefix; last (N,)
    its last token or -1 when empty. Returns psi (N,) and the extended forward variables (T, 2, N)."""
    T, n = log_probs.shape[0], len(cands)
    x = log_probs[:, cands]                                            # (T, N)
    r = torch.full((T, 2, n), -math.inf, device=log_probs.device)
    r[0, 0] = torch.where(last == -1, x[0], torch.full_like(x[0], -math.inf))
    # A repeated token needs a blank between, so only the prefix's blank-ending paths continue it.
    phi = torch.where(cands == last, r_prev[:, 1], torch.logaddexp(r_prev[:, 0], r_prev[:, 1]))
    psi = r[0, 0].clone()
    blank_lp = log_probs[:, blank : blank + 1]
    for t in range(1, T):
        r[t, 0] = torch.logaddexp(r[t - 1, 0], phi[t - 1]) + x[t]
        r[t, 1] = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + blank_lp[t]
        psi = torch.logaddexp(psi, phi[t - 1] + x[t])
    return psi, r


def _lm_step_scores(char_lm: CharLM, opts: LMOptions, states: dict, prefixes: list[tuple[int, ...]],
                    cands: list[int], eos: int) -> torch.Tensor:
    """lm.weight * ln P_lm(c | prefix) + word_score for each (prefix, candidate); ``eos`` scores </s>.
    ``states`` caches the LM state of every prefix seen (extended in place)."""
    out = []
    for prefix, c in zip(prefixes, cands):
        state = states[prefix]
        if c == eos:
            out.append(opts.weight * char_lm.finish(state))
            continue
        nxt, lp = char_lm.score(state, c)
        states.setdefault(prefix + (c,), nxt)
        out.append(opts.weight * lp + opts.word_score)
    return torch.tensor(out)


@torch.no_grad()
def joint_beam(model: ASRModel, log_probs: torch.Tensor, memory: torch.Tensor, beam: int, ctc_weight: float,
               blank: int = 0, max_len: int | None = None,
               lm: tuple[CharLM, LMOptions] | None = None, ctc_propose: float = 0.05) -> list[int]:
    """One-pass beam search scoring (1 - w) * attention + w * CTC prefix probability per hypothesis,
    plus lm.weight * ln P_lm + lm.word_score per token with a character LM. ``ctc_propose``: tokens whose
    CTC posterior exceeds it in some frame are candidates at every step besides the decoder's pre-beam
    (1.0: the decoder's pre-beam only, the former behaviour)."""
    _require_decoder(model, "joint_beam")
    if not model.shares_ctc_vocab:
        raise ValueError("joint_beam needs a decoder over the CTC vocabulary; this model's decoder is Whisper's "
                         "(BPE): use attention_rescoring or attention_beam")
    device, eos = memory.device, model.sos_eos
    T = log_probs.shape[0]
    max_len = max_len or T
    init_r = torch.full((T, 2), -math.inf, device=device)
    init_r[:, 1] = torch.cumsum(log_probs[:, blank], 0)
    char_lm, lm_opts = lm if lm is not None else (None, None)
    lm_states = {(): char_lm.start()} if char_lm is not None else {}
    bonus = char_lm is not None and lm_opts.word_score > 0
    hyps = [((), 0.0, 0.0, init_r)]                          # tokens, score, ctc psi, forward vars
    ended: list[tuple[tuple[int, ...], float]] = []
    pre_beam = min(int(1.5 * beam) + 1, log_probs.shape[1])
    # Candidates are the decoder's pre-beam plus every token CTC finds likely somewhere in the utterance:
    # with the decoder's top-k alone, a token the decoder under-ranks can never be proposed, however
    # certain CTC is, and the search degrades to the decoder's own errors (the measured joint_beam defect).
    ctc_set = (log_probs.max(0).values > math.log(ctc_propose)).nonzero().squeeze(-1)
    ctc_set = ctc_set[ctc_set != blank]
    for _ in range(max_len + 1):
        inp = torch.full((len(hyps), 1 + max(len(h[0]) for h in hyps)), eos, dtype=torch.long, device=device)
        for i, (toks, *_rest) in enumerate(hyps):
            if toks:
                inp[i, 1 : len(toks) + 1] = torch.tensor(toks)
        lens = torch.tensor([len(h[0]) for h in hyps], device=device)
        mem = memory.unsqueeze(0).expand(len(hyps), -1, -1)
        no_pad = torch.zeros(mem.shape[:2], dtype=torch.bool, device=device)
        token_pad = torch.arange(inp.shape[1], device=device)[None, :] > lens[:, None]
        att = model.decoder(inp, mem, no_pad, token_pad).float().log_softmax(-1)
        att = att[torch.arange(len(hyps)), lens]            # next-token distribution of each hyp
        att[:, blank] = -math.inf
        top = torch.topk(att, pre_beam, dim=-1).indices                    # (H, K)
        propose = torch.zeros_like(att, dtype=torch.bool)
        propose.scatter_(1, top, True)
        if ctc_propose < 1.0:
            propose[:, ctc_set] = True
            propose[:, eos] = True
        hyp_idx, cands = propose.nonzero(as_tuple=True)
        prefix_psi = torch.tensor([h[2] for h in hyps], device=device)[hyp_idx]
        ctc_psi = torch.empty(len(cands), device=device)
        is_eos = cands == eos
        ext = (~is_eos).nonzero().squeeze(-1)
        r_all = torch.stack([h[3] for h in hyps], dim=-1)                   # (T, 2, H)
        new_r = None
        if len(ext):
            last = torch.tensor([h[0][-1] if h[0] else -1 for h in hyps], device=device)[hyp_idx[ext]]
            ctc_psi[ext], new_r = _ctc_prefix_extend(log_probs, r_all[:, :, hyp_idx[ext]], last, cands[ext], blank)
        eos_idx = is_eos.nonzero().squeeze(-1)
        ctc_psi[eos_idx] = torch.logaddexp(r_all[-1, 0], r_all[-1, 1])[hyp_idx[eos_idx]]
        base = torch.tensor([h[1] for h in hyps], device=device)[hyp_idx]
        total = base + (1 - ctc_weight) * att[hyp_idx, cands] + ctc_weight * (ctc_psi - prefix_psi)
        if char_lm is not None:
            total = total + _lm_step_scores(char_lm, lm_opts, lm_states, [hyps[h][0] for h in hyp_idx.tolist()],
                                            cands.tolist(), eos)
        column = torch.full((len(cands),), -1, dtype=torch.long)
        column[ext.cpu()] = torch.arange(len(ext))
        candidates = [(s, hyps[h][0], c, p, None if col < 0 else new_r[:, :, col])
                      for s, h, c, p, col in zip(total.tolist(), hyp_idx.tolist(), cands.tolist(),
                                                 ctc_psi.tolist(), column.tolist())]
        # max_len tokens at most: past it a hypothesis can only end (the last step ends every one)
        candidates = [x for x in candidates if x[2] == eos or len(x[1]) < max_len]
        if not candidates:
            break
        candidates.sort(key=lambda x: x[0], reverse=True)
        hyps = []
        for s, toks, c, p, r in candidates[:beam]:
            if c == eos:
                ended.append((toks, s))
            elif s > -math.inf:
                hyps.append((toks + (c,), s, p, r))
        best_ended = max((s for _, s in ended), default=-math.inf)
        # Without a word score, scores only fall as tokens are added, so nothing running can beat the best
        # ended hypothesis; a positive word score can lift a running one, so then the search goes on.
        if not hyps or (len(ended) >= beam and not bonus and max(h[1] for h in hyps) < best_ended):
            break
    if not ended:
        ended = [(h[0], h[1]) for h in hyps] or [((), 0.0)]
    return list(max(ended, key=lambda x: x[1])[0])


MAX_TOKENS_PER_FRAME = 0.3


@torch.no_grad()
def attention_beam(model: ASRModel, memory: torch.Tensor, beam: int, max_len: int = 200,
                   prefix: list[int] | None = None) -> list[int]:
    """Attention-only beam search in the decoder's vocabulary (Whisper's own decoding), ranking ended
    hypotheses by mean token log-probability so short outputs are not favoured. ``prefix``: the
    decoder's (default ``model.att_prefix``)."""
    _require_decoder(model, "attention_beam")
    device, eos, prefix = memory.device, model.att_eos, list(prefix or model.att_prefix)
    # Bounded by the audio too: a hypothesis that never ends (a decoder looping on a repeated token) stops at
    # 15 tokens per second of speech (50 Whisper frames), twice Whisper's own 224 tokens per 30-s window.
    max_len = min(max_len, model.decoder.max_len - len(prefix) - 1, 10 + int(MAX_TOKENS_PER_FRAME * memory.shape[0]))
    hyps: list[tuple[list[int], float]] = [([], 0.0)]
    ended: list[tuple[list[int], float]] = []
    mem_kv = model.decoder.memory_kv(memory.unsqueeze(0))
    no_pad = torch.zeros(1, memory.shape[0], dtype=torch.bool, device=device)
    for _ in range(max_len):
        inp = torch.tensor([prefix + h for h, _ in hyps], device=device)
        kv = [(k.expand(len(hyps), -1, -1, -1), v.expand(len(hyps), -1, -1, -1)) for k, v in mem_kv]
        logp = model.decoder.next_token_logits(inp, kv, no_pad.expand(len(hyps), -1)).float().log_softmax(-1)
        if model.shares_ctc_vocab:
            logp[:, 0] = -math.inf   # <blank> is a CTC symbol, never an output
        total = torch.tensor([s for _, s in hyps], device=device)[:, None] + logp
        top = torch.topk(total.reshape(-1), beam)
        hyps_next = []
        for score, flat in zip(top.values.tolist(), top.indices.tolist()):
            h, tok = divmod(flat, logp.shape[1])
            if tok == eos:
                ended.append((hyps[h][0], score))
            else:
                hyps_next.append((hyps[h][0] + [tok], score))
        hyps = hyps_next
        if not hyps or len(ended) >= beam:
            break
    ended = ended or hyps
    return max(ended, key=lambda x: x[1] / (len(x[0]) + 1))[0]
