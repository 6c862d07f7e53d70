"""Encoder + CTC head + optional attention decoder, trained with a hybrid CTC/attention loss.

The attention decoder either learns the CTC character vocabulary from scratch, or is Whisper's
pretrained decoder over its own BPE vocabulary (``model.decoder.pretrained``): then the attention
targets are the same normalized texts, encoded by ``att_vocab``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from speechalign.models.decoder import AttentionDecoder
from speechalign.models.encoders import EncoderOutput, build_encoder, padding_mask

IGNORE = -1


class ASRModel(nn.Module):
    def __init__(self, encoder: nn.Module, vocab_size: int, cfg, decoder: AttentionDecoder | None = None,
                 att_vocab=None):
        super().__init__()
        self.encoder = encoder
        self.vocab_size = vocab_size
        self.sos_eos = 2
        self.ctc_weight = cfg.model.ctc_weight
        self.ctc = nn.Linear(encoder.dim, vocab_size)
        d = cfg.model.decoder
        if decoder is None and d.num_layers > 0:
            decoder = AttentionDecoder(vocab_size, encoder.dim, d.num_layers, d.num_heads, d.ffn_dim, d.dropout)
        self.decoder = decoder
        # Attention vocabulary: the CTC characters (<sos/eos> both starts and ends), or Whisper's BPE.
        self.att_vocab = att_vocab
        self.att_prefix = list(att_vocab.prefix) if att_vocab is not None else [self.sos_eos]
        self.att_eos = att_vocab.eos if att_vocab is not None else self.sos_eos
        self.att_vocab_size = decoder.embed.num_embeddings if decoder is not None else 0
        self.label_smoothing = d.label_smoothing
        if self.decoder is None and self.ctc_weight < 1.0:
            raise ValueError(f"model.ctc_weight={self.ctc_weight} needs an attention decoder "
                             "(model.decoder.num_layers > 0 or model.decoder.pretrained)")

    @property
    def shares_ctc_vocab(self) -> bool:
        """True when decoder and CTC head score the same tokens (needed by joint CTC/attention search)."""
        return self.att_vocab is None

    def attention_targets(self, targets: list[list[int]], texts: list[str] | None) -> list[list[int]]:
        if self.att_vocab is None:
            return targets
        if texts is None:
            raise ValueError("a BPE attention decoder needs the batch texts")
        return [self.att_vocab.encode(t) for t in texts]

    def encode(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> EncoderOutput:
        return self.encoder(wav, wav_lens)

    def ctc_log_probs(self, enc: EncoderOutput) -> torch.Tensor:
        return self.ctc(enc.last).float().log_softmax(-1)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor, targets: list[list[int]],
                texts: list[str] | None = None) -> dict:
        """Loss per utterance (summed over tokens, averaged over the batch) and its parts."""
        return self.loss(self.encode(wav, wav_lens), targets, texts)

    def loss(self, enc: EncoderOutput, targets: list[list[int]], texts: list[str] | None = None) -> dict:
        """The hybrid loss of already-encoded utterances (validation reuses the encoding it decodes)."""
        batch = len(targets)
        device = enc.last.device
        target_lens = torch.tensor([len(t) for t in targets], device=device)
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long, device=device)
        log_probs = self.ctc_log_probs(enc)
        ctc = nn.functional.ctc_loss(log_probs.transpose(0, 1), flat, enc.lengths, target_lens,
                                     blank=0, reduction="sum", zero_infinity=False) / batch
        out = {"ctc": ctc, "loss": ctc}
        if self.decoder is not None and self.ctc_weight < 1.0:
            att, acc = self.attention_loss(enc, self.attention_targets(targets, texts))
            out.update(att=att, att_acc=acc, loss=self.ctc_weight * ctc + (1 - self.ctc_weight) * att)
        return out

    def attention_loss(self, enc: EncoderOutput, targets: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        inp, gold, pad = self.teacher_forcing(targets, enc.last.device)
        logits = self.decoder(inp, enc.last, padding_mask(enc.lengths, enc.last.shape[1]), pad)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, self.att_vocab_size), gold.reshape(-1),
                                           ignore_index=IGNORE, label_smoothing=self.label_smoothing,
                                           reduction="sum") / len(targets)
        mask = gold != IGNORE
        acc = (logits.argmax(-1)[mask] == gold[mask]).float().mean()
        return loss, acc

    def teacher_forcing(self, targets: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder inputs (prefix + tokens, padded with eos), gold outputs (tokens + eos; IGNORE under the
        prefix but its last position, and after eos) and the input padding mask."""
        p = len(self.att_prefix)
        longest = max(len(t) for t in targets) + p
        inp = torch.full((len(targets), longest), self.att_eos, dtype=torch.long, device=device)
        gold = torch.full((len(targets), longest), IGNORE, dtype=torch.long, device=device)
        inp[:, :p] = torch.tensor(self.att_prefix, device=device)
        for i, t in enumerate(targets):
            t = torch.tensor(t, dtype=torch.long, device=device)
            inp[i, p : p + len(t)] = t
            gold[i, p - 1 : p - 1 + len(t)] = t
            gold[i, p - 1 + len(t)] = self.att_eos
        lens = torch.tensor([p + len(t) for t in targets], device=device)
        return inp, gold, padding_mask(lens, longest)

    def set_frozen(self, frontend: bool, first_layers: int, whole_encoder: bool, decoder_embedding: bool = False) -> None:
        """Freeze parts of the encoder and the decoder's token embedding (requires_grad off); everything
        else trains. Whisper's 51,865-row embedding is a third of the model: frozen, its BPE output layer
        keeps what it knows and the optimizer skips it."""
        if self.decoder is not None:
            self.decoder.embed.requires_grad_(not decoder_embedding)
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


def build_decoder(cfg, saved_json: Path | None = None) -> AttentionDecoder | None:
    """Whisper's pretrained decoder when ``model.decoder.pretrained`` names an imported Whisper dir
    (``speechalign fetch-pretrained``); with ``saved_json`` the architecture comes from an experiment
    dir and the weights from its checkpoint."""
    d = cfg.model.decoder
    if not d.pretrained:
        return None
    src = Path(os.path.expanduser(d.pretrained))
    arch = json.loads(Path(saved_json or src / "decoder.json").read_text(encoding="utf-8"))
    decoder = AttentionDecoder(**arch, dropout=d.dropout)
    if saved_json is None:
        from safetensors.torch import load_file

        weights = src / "decoder.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"model.decoder.pretrained: {weights} not found (re-run speechalign "
                                    "fetch-pretrained whisper-base, which imports the decoder too)")
        decoder.load_state_dict(load_file(str(weights)), strict=True)
    return decoder


def build_model(cfg, vocab_size: int, hf_config_path: Path | None = None, decoder_json: Path | None = None,
                att_vocab=None) -> ASRModel:
    return ASRModel(build_encoder(cfg, hf_config_path), vocab_size, cfg, build_decoder(cfg, decoder_json), att_vocab)
