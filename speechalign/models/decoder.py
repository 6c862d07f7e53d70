"""Transformer attention decoder for the hybrid CTC/attention loss.

The same module holds a cold-started character decoder and Whisper's pretrained decoder: Whisper's
decoder layer is exactly a pre-norm ``nn.TransformerDecoderLayer`` with GELU, so its weights load
into it (learned positions, unscaled embeddings, output tied to the embedding; see ct2_import).
"""

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
    """Pre-norm Transformer decoder over encoder states; a prefix starts and ``eos`` ends each sequence."""

    def __init__(self, vocab_size: int, d_model: int, num_layers: int, num_heads: int, ffn_dim: int,
                 dropout: float, max_len: int = 1024, activation: str = "relu", learned_positions: bool = False,
                 scale_embedding: bool = True, tie_output: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        if learned_positions:
            self.pos = nn.Parameter(torch.zeros(max_len, d_model))
        else:
            self.register_buffer("pos", sinusoids(max_len, d_model), persistent=False)
        layer = nn.TransformerDecoderLayer(d_model, num_heads, ffn_dim, dropout, activation=activation,
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.out = None if tie_output else nn.Linear(d_model, vocab_size)
        self.scale = math.sqrt(d_model) if scale_embedding else 1.0
        self.max_len = max_len
        # Tokens a decoder trained with a restricted softmax may output: the others' logits were never
        # trained down, and free, they win (byte fragments, runaway hypotheses). None = every token.
        self.register_buffer("allowed", None, persistent=False)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor,
                token_pad: torch.Tensor | None = None, vocab: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) token ids (starting with the prefix) -> (B, L, V) logits; with ``vocab`` (sorted ids)
        only those output rows, (B, L, len(vocab))."""
        length = tokens.shape[1]
        if length > self.max_len:
            raise ValueError(f"attention decoder: {length} tokens exceed its {self.max_len} positions")
        x = self.embed(tokens) * self.scale + self.pos[:length]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), 1)
        x = self.layers(x, memory, tgt_mask=causal, tgt_key_padding_mask=token_pad,
                        memory_key_padding_mask=memory_pad, tgt_is_causal=True)
        return self.project(x, vocab)

    def project(self, x: torch.Tensor, vocab: torch.Tensor | None = None) -> torch.Tensor:
        """Output logits of decoder states, over the rows ``vocab``, or over every token (minus infinity
        outside ``allowed`` when the decoder was trained on a restricted vocabulary)."""
        if vocab is not None:
            if self.out is not None:
                return nn.functional.linear(x, self.out.weight[vocab], self.out.bias[vocab])
            return nn.functional.linear(x, self.embed.weight[vocab])
        if self.allowed is None:
            return self.out(x) if self.out is not None else nn.functional.linear(x, self.embed.weight)
        # Only the allowed rows are computed: with Whisper's 51,865 rows and ~1,000 allowed, the full output
        # layer was a quarter of a beam step at 20 tokens (bench/restricted_output.py: 1.33x).
        rows = self.allowed.nonzero().squeeze(-1)
        logits = x.new_full((*x.shape[:-1], self.allowed.numel()), float("-inf"))
        logits[..., rows] = self.project(x, rows)
        return logits

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's cross-attention keys and values of ``memory`` (B, T, D), as (B, heads, T, d_head):
        computed once per utterance, so beam search does not re-project the memory at every step."""
        out = []
        for layer in self.layers.layers:
            mha = layer.multihead_attn
            d = mha.embed_dim
            k = nn.functional.linear(memory, mha.in_proj_weight[d : 2 * d], mha.in_proj_bias[d : 2 * d])
            v = nn.functional.linear(memory, mha.in_proj_weight[2 * d :], mha.in_proj_bias[2 * d :])
            out.append((self._heads(k, mha.num_heads), self._heads(v, mha.num_heads)))
        return out

    @staticmethod
    def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, heads, d // heads).transpose(1, 2)

    def next_token_logits(self, tokens: torch.Tensor, memory_kv: list, memory_pad: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, V) logits of the next token, with cached memory keys/values; equal to
        ``forward(...)[:, -1]`` in eval mode (pre-norm layers, as built here)."""
        length = tokens.shape[1]
        x = self.embed(tokens) * self.scale + self.pos[:length]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), 1)
        keep = ~memory_pad[:, None, None, :]
        for layer, (k, v) in zip(self.layers.layers, memory_kv):
            h = layer.norm1(x)
            x = x + layer.self_attn(h, h, h, attn_mask=causal, need_weights=False)[0]
            mha = layer.multihead_attn
            d = mha.embed_dim
            q = self._heads(nn.functional.linear(layer.norm2(x), mha.in_proj_weight[:d], mha.in_proj_bias[:d]),
                            mha.num_heads)
            att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
            x = x + mha.out_proj(att.transpose(1, 2).reshape(x.shape))
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        return self.project(self.layers.norm(x[:, -1]))
