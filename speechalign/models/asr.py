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
from speechalign.models.lora import add_lora, freeze_lora_bases

IGNORE = -1


class ASRModel(nn.Module):
    def __init__(self, encoder: nn.Module, vocab_size: int, cfg, decoder: AttentionDecoder | None = None,
                 att_vocab=None):
        super().__init__()
        self.encoder = encoder
        self.vocab_size = vocab_size
        self.sos_eos = 2
        self.ctc_weight = cfg.model.ctc_weight
        self.ctc_encoder_grad = cfg.model.ctc_encoder_grad
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
        self.att_targets = d.targets
        self.prompt, self.plain_varieties = d.prompt, set(d.plain_varieties)
        # Output rows the training softmax covers (None = all); set by the trainer from the training targets.
        self.register_buffer("train_vocab", None, persistent=False)
        if self.decoder is None and self.ctc_weight < 1.0:
            raise ValueError(f"model.ctc_weight={self.ctc_weight} needs an attention decoder "
                             "(model.decoder.num_layers > 0 or model.decoder.pretrained)")

    @property
    def shares_ctc_vocab(self) -> bool:
        """True when decoder and CTC head score the same tokens (needed by joint CTC/attention search)."""
        return self.att_vocab is None

    def attention_targets(self, targets: list[list[int]], texts: list[str] | None,
                          translations: list[str | None] | None = None,
                          spans: list | None = None) -> list[list[int] | None]:
        """Token ids the attention branch learns per utterance: the transcript (ASR-only; an item of ``texts``
        may be a packed window's list of texts, and with its ``spans`` (seconds) each text sits between
        Whisper's timestamp tokens), or with
        ``model.decoder.targets=translation`` the Mandarin sentence (None where a cut has none)."""
        if self.att_targets == "translation":
            if translations is None:
                raise ValueError("model.decoder.targets=translation needs the batch translations")
            if self.att_vocab is None:
                raise ValueError("model.decoder.targets=translation needs a pretrained (BPE) decoder")
            return [self.att_vocab.encode(t) if t else None for t in translations]
        if self.att_vocab is None:
            return targets
        if texts is None:
            raise ValueError("a BPE attention decoder needs the batch texts")
        # A packed window's texts are encoded one by one: byte-level BPE would merge characters across the
        # joint into tokens no single cut has (outside a restricted training softmax).
        spans = spans or [None] * len(texts)
        return [self.att_vocab.timed([t] if isinstance(t, str) else t, s) if s is not None
                else self.att_vocab.encode(t) if isinstance(t, str) else [i for p in t for i in self.att_vocab.encode(p)]
                for t, s in zip(texts, spans)]

    def prefixes(self, dialects: list[str] | None, n: int, timed: list[bool] | None = None) -> list[list[int]]:
        """The decoder prefix of each of ``n`` utterances. With ``model.decoder.prompt=variety`` a cut of a
        variety is prompted with its label (``<|startofprev|> Taiwanese Hokkien`` before Whisper's prefix);
        ``model.decoder.plain_varieties`` (Mandarin), an unlabelled cut ("unknown") and ``dialects=None``
        get the plain prefix, the one zero-shot Whisper is decoded with. A ``timed`` item's prefix has no
        ``<|notimestamps|>``."""
        timed = timed or [False] * n
        if self.prompt == "none" or dialects is None:
            return [self.att_vocab.prefix_for(True) if t else self.att_prefix for t in timed]
        if len(dialects) != n:
            raise ValueError(f"{len(dialects)} variety labels for {n} utterances")
        return [self.att_vocab.prefix_for(t) if d in self.plain_varieties or d == "unknown"
                else self.att_vocab.prompted(d, t) for d, t in zip(dialects, timed)]

    def set_train_vocab(self, ids: list[int] | None) -> None:
        """Restrict the decoder to ``ids`` (the tokens the training targets use, the end token among them):
        the training softmax runs over them only, and decoding never outputs another token."""
        device = self.ctc.weight.device
        if ids is None:
            self.train_vocab = self.decoder.allowed = None
            return
        self.train_vocab = torch.tensor(sorted(set(ids)), dtype=torch.long, device=device)
        allowed = torch.zeros(self.att_vocab_size, dtype=torch.bool, device=device)
        allowed[self.train_vocab] = True
        self.decoder.allowed = allowed

    def encode(self, wav: torch.Tensor, wav_lens: torch.Tensor, start_layer: int | None = None) -> EncoderOutput:
        """Raw input, or with ``start_layer`` the (cached) input of that encoder layer and its frame counts."""
        if start_layer is None:
            return self.encoder(wav, wav_lens)
        return self.encoder.run_layers(wav, wav_lens, start_layer)

    def ctc_log_probs(self, enc: EncoderOutput, encoder_grad: float = 1.0) -> torch.Tensor:
        """CTC log-probabilities; ``encoder_grad`` scales the gradient the CTC loss sends into the encoder
        (the forward value is unchanged)."""
        states = enc.last
        if encoder_grad != 1.0:
            states = states.detach() + encoder_grad * (states - states.detach())
        return self.ctc(states).float().log_softmax(-1)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor, targets: list[list[int]],
                texts: list[str] | None = None, translations: list[str | None] | None = None,
                start_layer: int | None = None, keep_attention: bool = False,
                dialects: list[str] | None = None, spans: list | None = None) -> dict:
        """Loss per utterance (summed over tokens, averaged over the batch) and its parts."""
        return self.loss(self.encode(wav, wav_lens, start_layer), targets, texts, translations, keep_attention,
                         dialects, spans)

    def loss(self, enc: EncoderOutput, targets: list[list[int]], texts: list[str] | None = None,
             translations: list[str | None] | None = None, keep_attention: bool = False,
             dialects: list[str] | None = None, spans: list | None = None) -> dict:
        """The hybrid loss of already-encoded utterances (validation reuses the encoding it decodes).
        With ``keep_attention`` the decoder's inputs and logits are returned too (``out["attention"]``), and the
        encoder's output (``out["encoder"]``), for loss terms built on them (distillation, alignment). ``dialects`` selects the decoder prefixes
        (:meth:`prefixes`); ``spans``, per item None or its parts' (start, end) seconds, puts Whisper's
        timestamp tokens into that item's decoder target (:meth:`attention_targets`)."""
        batch = len(targets)
        device = enc.last.device
        target_lens = torch.tensor([len(t) for t in targets], device=device)
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long, device=device)
        log_probs = self.ctc_log_probs(enc, self.ctc_encoder_grad if self.training else 1.0)
        ctc = nn.functional.ctc_loss(log_probs.transpose(0, 1), flat, enc.lengths, target_lens,
                                     blank=0, reduction="sum", zero_infinity=False) / batch
        out = {"ctc": ctc, "loss": ctc, **({"encoder": enc} if keep_attention else {})}
        if self.decoder is not None and self.ctc_weight < 1.0:
            att_targets = self.attention_targets(targets, texts, translations, spans)
            keep = [i for i, t in enumerate(att_targets) if t is not None]
            if not keep:  # no item of this batch has an attention target: CTC alone
                return out
            memory, lengths = enc.last, enc.lengths
            if len(keep) < batch:
                index = torch.tensor(keep, device=device)
                memory, lengths = memory.index_select(0, index), lengths.index_select(0, index)
            prefixes = self.prefixes(dialects, batch, [s is not None for s in spans] if spans else None)
            att, acc, io = self.attention_loss(memory, lengths, [att_targets[i] for i in keep], batch,
                                               [prefixes[i] for i in keep])
            out.update(att=att, att_acc=acc, loss=self.ctc_weight * ctc + (1 - self.ctc_weight) * att)
            if keep_attention:
                out["attention"] = {**io, "rows": keep}   # the batch items the decoder rows belong to
        return out

    def attention_loss(self, memory: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]],
                       batch: int | None = None, prefixes: list[list[int]] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Teacher-forced cross-entropy (summed over tokens, divided by ``batch``), token accuracy, and
        the decoder's inputs and logits. With a restricted vocabulary the softmax runs over ``train_vocab``
        only: the loss of a full softmax whose other logits are minus infinity. A validation target token
        outside it cannot be produced and is left out of the loss."""
        inp, gold, pad = self.teacher_forcing(targets, memory.device, prefixes)
        memory_pad = padding_mask(lengths, memory.shape[1])
        vocab = self.train_vocab
        logits = self.decoder(inp, memory, memory_pad, pad, vocab=vocab)
        if vocab is not None:
            remap = torch.full((self.att_vocab_size,), IGNORE, dtype=torch.long, device=gold.device)
            remap[vocab] = torch.arange(len(vocab), device=gold.device)
            mapped = torch.where(gold == IGNORE, gold, remap[gold.clamp(min=0)])
            if self.training and bool(((mapped == IGNORE) & (gold != IGNORE)).any()):
                raise ValueError("model.decoder.train_vocab=targets: a training target uses a token outside the "
                                 "training vocabulary (the vocabulary is built from the training manifests)")
            gold = mapped
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), gold.reshape(-1),
                                           ignore_index=IGNORE, label_smoothing=self.label_smoothing,
                                           reduction="sum") / (batch or len(targets))
        mask = gold != IGNORE
        acc = (logits.argmax(-1)[mask] == gold[mask]).float().mean()
        io = {"tokens": inp, "token_pad": pad, "memory": memory, "memory_pad": memory_pad, "logits": logits,
              "gold": gold, "vocab": vocab, "batch": batch or len(targets)}
        return loss, acc, io

    def teacher_forcing(self, targets: list[list[int]], device, prefixes: list[list[int]] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder inputs (prefix + tokens, padded with eos), gold outputs (tokens + eos; IGNORE under the
        prefix but its last position, and after eos) and the input padding mask. ``prefixes``: one per
        target (default ``att_prefix`` for all)."""
        prefixes = prefixes or [self.att_prefix] * len(targets)
        lens = [len(p) + len(t) for p, t in zip(prefixes, targets)]
        longest = max(lens)
        inp = torch.full((len(targets), longest), self.att_eos, dtype=torch.long, device=device)
        gold = torch.full((len(targets), longest), IGNORE, dtype=torch.long, device=device)
        for i, (prefix, t) in enumerate(zip(prefixes, targets)):
            row, p = torch.tensor(prefix + list(t), dtype=torch.long, device=device), len(prefix)
            inp[i, : len(row)] = row
            gold[i, p - 1 : p - 1 + len(t)] = row[p:]
            gold[i, p - 1 + len(t)] = self.att_eos
        return inp, gold, padding_mask(torch.tensor(lens, device=device), longest)

    def set_frozen(self, frontend: bool, first_layers: int, whole_encoder: bool, decoder_embedding: bool = False) -> None:
        """Freeze parts of the encoder and the decoder's token embedding (requires_grad off); everything
        else trains. Whisper's 51,865-row embedding is a third of the model: frozen, its BPE output layer
        keeps what it knows and the optimizer skips it."""
        if self.decoder is not None:
            self.decoder.embed.requires_grad_(not decoder_embedding)
        for p in self.encoder.parameters():
            p.requires_grad_(not whole_encoder)
        if not whole_encoder:
            frozen = (self.encoder.frontend_modules() if frontend else []) + self.encoder.layer_modules()[:first_layers]
            for module in frozen:
                for p in module.parameters():
                    p.requires_grad_(False)
            if hasattr(self.encoder, "encoder"):  # Whisper's positional table is fixed by design
                self.encoder.encoder.embed_positions.requires_grad_(False)
        freeze_lora_bases(self, encoder_frozen=whole_encoder)


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
    model = ASRModel(build_encoder(cfg, hf_config_path), vocab_size, cfg, build_decoder(cfg, decoder_json), att_vocab)
    add_lora(model, cfg.model)
    return model
