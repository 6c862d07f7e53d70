"""Transformer attention decoder for the hybrid CTC/attention loss."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoids(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * inv), torch.cos(pos * inv)
    return table


class AttentionDecoder(nn.Module):
    """Pre-norm Transformer decoder over encoder states; ``<sos/eos>`` starts and ends each sequence."""

    def __init__(self, vocab_size: int, d_model: int, num_layers: int, num_heads: int, ffn_dim: int,
                 dropout: float, max_len: int = 1024):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("pos", sinusoids(max_len, d_model), persistent=False)
        layer = nn.TransformerDecoderLayer(d_model, num_heads, ffn_dim, dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.out = nn.Linear(d_model, vocab_size)
        self.scale = math.sqrt(d_model)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor,
                token_pad: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) token ids (starting with <sos>) -> (B, L, V) logits."""
        length = tokens.shape[1]
        x = self.embed(tokens) * self.scale + self.pos[:length]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), 1)
        x = self.layers(x, memory, tgt_mask=causal, tgt_key_padding_mask=token_pad,
                        memory_key_padding_mask=memory_pad, tgt_is_causal=True)
        return self.out(x)
