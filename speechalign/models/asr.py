"""Encoder + CTC head + optional attention decoder, trained with a hybrid CTC/attention loss."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from speechalign.models.decoder import AttentionDecoder
from speechalign.models.encoders import EncoderOutput, build_encoder, padding_mask

IGNORE = -1


class ASRModel(nn.Module):
    def __init__(self, encoder: nn.Module, vocab_size: int, cfg):
        super().__init__()
        self.encoder = encoder
        self.vocab_size = vocab_size
        self.sos_eos = 2
        self.ctc_weight = cfg.model.ctc_weight
        self.ctc = nn.Linear(encoder.dim, vocab_size)
        d = cfg.model.decoder
        self.decoder = (AttentionDecoder(vocab_size, encoder.dim, d.num_layers, d.num_heads, d.ffn_dim, d.dropout)
                        if d.num_layers > 0 else None)
        self.label_smoothing = d.label_smoothing
        if self.decoder is None and self.ctc_weight < 1.0:
            raise ValueError(f"model.ctc_weight={self.ctc_weight} needs an attention decoder "
                             "(model.decoder.num_layers > 0)")

    def encode(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> EncoderOutput:
        return self.encoder(wav, wav_lens)

    def ctc_log_probs(self, enc: EncoderOutput) -> torch.Tensor:
        return self.ctc(enc.last).float().log_softmax(-1)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor, targets: list[list[int]]) -> dict:
        """Loss per utterance (summed over tokens, averaged over the batch) and its parts."""
        enc = self.encode(wav, wav_lens)
        batch = len(targets)
        device = wav.device
        target_lens = torch.tensor([len(t) for t in targets], device=device)
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long, device=device)
        log_probs = self.ctc_log_probs(enc)
        ctc = nn.functional.ctc_loss(log_probs.transpose(0, 1), flat, enc.lengths, target_lens,
                                     blank=0, reduction="sum", zero_infinity=False) / batch
        out = {"ctc": ctc, "loss": ctc}
        if self.decoder is not None and self.ctc_weight < 1.0:
            att, acc = self.attention_loss(enc, targets)
            out.update(att=att, att_acc=acc, loss=self.ctc_weight * ctc + (1 - self.ctc_weight) * att)
        return out

    def attention_loss(self, enc: EncoderOutput, targets: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        device = enc.last.device
        longest = max(len(t) for t in targets) + 1
        inp = torch.full((len(targets), longest), self.sos_eos, dtype=torch.long, device=device)
        gold = torch.full((len(targets), longest), IGNORE, dtype=torch.long, device=device)
        for i, t in enumerate(targets):
            inp[i, 1 : len(t) + 1] = torch.tensor(t, device=device)
            gold[i, : len(t)] = torch.tensor(t, device=device)
            gold[i, len(t)] = self.sos_eos
        logits = self.decoder(inp, enc.last, padding_mask(enc.lengths, enc.last.shape[1]), gold == IGNORE)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, self.vocab_size), gold.reshape(-1),
                                           ignore_index=IGNORE, label_smoothing=self.label_smoothing,
                                           reduction="sum") / len(targets)
        mask = gold != IGNORE
        acc = (logits.argmax(-1)[mask] == gold[mask]).float().mean()
        return loss, acc

    def set_frozen(self, frontend: bool, first_layers: int, whole_encoder: bool) -> None:
        """Freeze parts of the encoder (requires_grad off); everything else trains."""
        for p in self.encoder.parameters():
            p.requires_grad_(not whole_encoder)
        if whole_encoder:
            return
        frozen = (self.encoder.frontend_modules() if frontend else []) + self.encoder.layer_modules()[:first_layers]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        if hasattr(self.encoder, "encoder"):  # Whisper's positional table is fixed by design
            self.encoder.encoder.embed_positions.requires_grad_(False)


def build_model(cfg, vocab_size: int, hf_config_path: Path | None = None) -> ASRModel:
    return ASRModel(build_encoder(cfg, hf_config_path), vocab_size, cfg)
