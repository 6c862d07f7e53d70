"""Loss terms added to the model's hybrid CTC/attention loss, chosen by config.

The trainer sums ``weight * term(out)`` over :func:`build_terms` and knows no term by name. A term
reads what the model's forward returned with ``keep_attention`` (the decoder's inputs and logits).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from speechalign.models.asr import IGNORE, ASRModel, build_decoder


class DecoderDistillation(nn.Module):
    """KL(teacher || student) per target token, towards the frozen pretrained Whisper decoder reading the
    same encoder memory and the same prefix: the decoder may learn the new varieties, but is pulled back
    to the distribution that made it a good Mandarin decoder (learning without forgetting)."""

    name = "distill"

    def __init__(self, teacher: nn.Module, weight: float, temperature: float):
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight, self.temperature = weight, temperature

    def forward(self, out: dict) -> torch.Tensor | None:
        io = out.get("attention")
        if io is None:
            return None
        with torch.no_grad():
            teacher = self.teacher(io["tokens"], io["memory"].detach(), io["memory_pad"], io["token_pad"],
                                   vocab=io["vocab"])
        t = self.temperature
        mask = io["gold"] != IGNORE
        student = (io["logits"].float() / t).log_softmax(-1)[mask]
        target = (teacher.float() / t).log_softmax(-1)[mask]
        kl = nn.functional.kl_div(student, target, log_target=True, reduction="sum")
        return kl * t * t / io["batch"]


def build_terms(cfg, model: ASRModel) -> list[nn.Module]:
    """The configured extra loss terms (``model.guard``); empty for the plain hybrid loss."""
    guard = cfg.model.guard
    if guard.kind == "none" or guard.weight == 0:
        return []
    if model.decoder is None or cfg.model.ctc_weight >= 1.0:
        raise ValueError("model.guard.kind=distill needs the attention branch (model.ctc_weight < 1)")
    # The teacher is read from the pretrained files, so a resumed run gets the same one. Only dry runs
    # (random-init miniatures, no pretrained dir) take a copy of the decoder as it starts.
    teacher = build_decoder(cfg) if cfg.model.decoder.pretrained else copy.deepcopy(model.decoder)
    return [DecoderDistillation(teacher.to(next(model.parameters()).device), guard.weight, guard.temperature)]


def add_terms(out: dict, terms: list[nn.Module]) -> dict:
    """Add each term's value (named) and weighted share of the loss to a forward's output, then drop the
    decoder tensors kept for them."""
    for term in terms:
        value = term(out)
        if value is not None:
            out[term.name] = value
            out["loss"] = out["loss"] + term.weight * value
    out.pop("attention", None)
    return out
