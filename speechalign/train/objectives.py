"""Loss terms added to the model's hybrid CTC/attention loss, chosen by config.

The trainer sums ``weight * term(out)`` over :func:`build_terms` and knows no term by name. A term
reads what the model's forward returned with ``keep_attention`` (the decoder's inputs and logits).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from speechalign.models.asr import IGNORE, ASRModel, build_decoder
from speechalign.models.encoders import WhisperSpeechEncoder, load_pretrained_whisper_encoder, padding_mask
from speechalign.train.alignment import CrossDialectAlignment


def guarded_rows(io: dict, batch, varieties: tuple[str, ...]) -> list[int]:
    """The decoder rows (positions in ``io``) a term reads: those whose batch item is of one of ``varieties``
    (a packed window's variety, "mixed" when its cuts disagree), or every row when ``varieties`` is empty."""
    if not varieties:
        return list(range(len(io["rows"])))
    if batch is None:
        raise ValueError("model.guard.varieties: the term needs the batch's variety labels")
    return [r for r, i in enumerate(io["rows"]) if batch.dialects[i] in varieties]


def token_kl(student: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float, batch: int) -> torch.Tensor:
    """KL(teacher || student) summed over target tokens, divided by the batch size (as the loss is), with
    Hinton's t**2 so that the gradient's scale does not depend on the temperature."""
    student = (student.float() / temperature).log_softmax(-1)
    kl = nn.functional.kl_div(student, teacher_log_probs, log_target=True, reduction="sum")
    return kl * temperature ** 2 / batch


def rows_kl(io: dict, r: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """:func:`token_kl` of the decoder rows ``r`` against a teacher's logits for those rows."""
    mask = io["gold"][r] != IGNORE
    target = (teacher_logits.float() / temperature).log_softmax(-1)[mask]
    return token_kl(io["logits"][r][mask], target, temperature, io["batch"])


class DecoderDistillation(nn.Module):
    """KL(teacher || student) per target token, towards the frozen pretrained Whisper decoder reading the
    same encoder memory and the same prefix: the decoder may learn the new varieties, but is pulled back
    to the distribution that made it a good Mandarin decoder (learning without forgetting)."""

    name = "distill"

    def __init__(self, teacher: nn.Module, weight: float, temperature: float, varieties: tuple[str, ...] = ()):
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight, self.temperature, self.varieties = weight, temperature, tuple(varieties)

    def forward(self, out: dict, batch=None) -> torch.Tensor | None:
        io = out.get("attention")
        rows = guarded_rows(io, batch, self.varieties) if io is not None else []
        if not rows:
            return None
        r = torch.tensor(rows, device=io["logits"].device)
        with torch.no_grad():
            teacher = self.teacher(io["tokens"][r], io["memory"][r].detach(), io["memory_pad"][r], io["token_pad"][r],
                                   vocab=io["vocab"])
        return rows_kl(io, r, teacher, self.temperature)


class FrozenWhisper(nn.Module):
    """A loss term whose teacher is frozen pretrained Whisper, encoder and decoder."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, weight: float, temperature: float,
                 varieties: tuple[str, ...] = ()):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.decoder = decoder.eval().requires_grad_(False)
        self.weight, self.temperature, self.varieties = weight, temperature, tuple(varieties)

    def guarded(self, out: dict, batch) -> tuple[dict, list[int]] | None:
        """The decoder's inputs and logits and the rows this term reads, or None when it reads none here
        (its teacher reads the batch's audio)."""
        io = out.get("attention")
        if io is None or batch is None:
            return None
        rows = guarded_rows(io, batch, self.varieties)
        return (io, rows) if rows else None


class WindowTeacher(FrozenWhisper):
    """KL(teacher || student) per target token, towards frozen pretrained Whisper (encoder and decoder) reading
    the student's own 30-s input and prefix. On a packed window that is the format Whisper was pretrained on, in
    which it reads Mandarin best (greedy CER 9.2 % on goo-gi 121-170), so the term holds the whole model, encoder
    included, to what it did there (learning without forgetting), while the plain loss teaches the dialects.
    ``varieties`` limits it to windows of those varieties (Mandarin): Whisper's readings of dialect speech are
    not worth keeping. Computed live, one frozen encoder pass per guarded window: packing changes every epoch."""

    name = "window_teacher"

    def forward(self, out: dict, batch=None) -> torch.Tensor | None:
        found = self.guarded(out, batch)
        if found is None:
            return None
        io, rows = found
        r = torch.tensor(rows, device=io["logits"].device)
        items = torch.tensor([io["rows"][k] for k in rows], device=batch.wav.device)
        with torch.no_grad():
            enc = self.encoder(batch.wav.index_select(0, items), batch.wav_lens.index_select(0, items))
            memory_pad = padding_mask(enc.lengths, enc.last.shape[1])
            teacher = self.decoder(io["tokens"][r], enc.last, memory_pad, io["token_pad"][r], vocab=io["vocab"])
        return rows_kl(io, r, teacher, self.temperature)


class PaddedTeacher(FrozenWhisper):
    """KL(teacher || student) per target token, towards the frozen pretrained Whisper (encoder and decoder)
    reading the utterance padded to 30 s, the format it was trained on, while the student reads the trimmed
    memory (the idea of FUTO's whisper-acft). The teacher's distributions over the training rows are computed
    once per utterance, one utterance at a time, and kept in memory (float16), so later epochs cost nothing
    and a resumed run recomputes them bit for bit."""

    name = "padded_teacher"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def teacher_log_probs(self, cut_id: str, wav: torch.Tensor, n: int, tokens: torch.Tensor, positions: torch.Tensor,
                          vocab: torch.Tensor | None) -> torch.Tensor:
        """(len(positions), V) teacher log-probabilities (at temperature) of one utterance, cached by cut id."""
        if cut_id not in self.cache:
            enc = self.encoder(wav[None, :n], torch.tensor([n], device=wav.device))
            memory_pad = torch.zeros(1, enc.last.shape[1], dtype=torch.bool, device=wav.device)
            logits = self.decoder(tokens[None], enc.last, memory_pad, vocab=vocab)[0, positions]
            self.cache[cut_id] = (logits.float() / self.temperature).log_softmax(-1).half().cpu()
        # float16 rounding leaves the probabilities summing to 1 +- 1e-3, enough to make the KL of a student
        # close to its teacher negative: renormalized, the cache is a distribution again.
        return self.cache[cut_id].to(wav.device).float().log_softmax(-1)

    def forward(self, out: dict, batch=None) -> torch.Tensor | None:
        found = self.guarded(out, batch)
        if found is None:
            return None
        io, rows = found
        mask = io["gold"] != IGNORE
        target = torch.cat([self.teacher_log_probs(batch.ids[i], batch.wav[i], int(batch.wav_lens[i]),
                                                   io["tokens"][r][: int((~io["token_pad"][r]).sum())],
                                                   mask[r].nonzero()[:, 0], io["vocab"])
                            for r, i in ((r, io["rows"][r]) for r in rows)])
        r = torch.tensor(rows, device=io["logits"].device)
        return token_kl(io["logits"][r][mask[r]], target, self.temperature, io["batch"])

    def megabytes(self) -> float:
        return sum(t.numel() * t.element_size() for t in self.cache.values()) / 2**20


def build_terms(cfg, model: ASRModel) -> list[nn.Module]:
    """The configured extra loss terms (``model.guard``, ``model.align``); empty for the plain hybrid loss."""
    return build_guard(cfg, model) + build_align(cfg, model)


def build_align(cfg, model: ASRModel) -> list[nn.Module]:
    """The cross-dialect alignment term (``model.align``), or none."""
    a = cfg.model.align
    if a.kind == "none":
        return []
    if a.layer > model.encoder.num_layers:
        raise ValueError(f"model.align.layer={a.layer}: the encoder has layers 0 (its input) to "
                         f"{model.encoder.num_layers}")
    return [CrossDialectAlignment(a.kind, a.weight, a.layer, a.temperature, a.frame_temperature, a.frame_stride,
                                  model.encoder.frame_shift)]


def build_guard(cfg, model: ASRModel) -> list[nn.Module]:
    """The configured guard term (``model.guard``), or none."""
    guard = cfg.model.guard
    if guard.kind == "none" or guard.weight == 0:
        return []
    if model.decoder is None or cfg.model.ctc_weight >= 1.0:
        raise ValueError(f"model.guard.kind={guard.kind} needs the attention branch (model.ctc_weight < 1)")
    # The teacher is read from the pretrained files, so a resumed run gets the same one. Only dry runs
    # (random-init miniatures, no pretrained dir) take a copy of the model as it starts.
    device = next(model.parameters()).device
    decoder = build_decoder(cfg) if cfg.model.decoder.pretrained else copy.deepcopy(model.decoder)
    args = (guard.weight, guard.temperature, tuple(guard.varieties))
    if guard.kind == "distill":
        return [DecoderDistillation(decoder.to(device), *args)]
    w = cfg.model.whisper
    weights = load_pretrained_whisper_encoder(w.pretrained) if w.pretrained else copy.deepcopy(model.encoder.encoder)
    encoder = WhisperSpeechEncoder(weights, "pad30").to(device)
    teacher = WindowTeacher if guard.kind == "window_teacher" else PaddedTeacher
    return [teacher(encoder, decoder.to(device), *args)]


def add_terms(out: dict, terms: list[nn.Module], batch=None) -> dict:
    """Add each term's value (named) and weighted share of the loss to a forward's output, then drop the
    decoder tensors kept for them. ``batch``: the input batch, for terms that read its audio."""
    for term in terms:
        value = term(out, batch)
        if value is not None:
            out[term.name] = value
            out["loss"] = out["loss"] + term.weight * value
    out.pop("attention", None)
    out.pop("encoder", None)
    return out
