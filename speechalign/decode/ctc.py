"""CTC decoding of (B, T, V) log-probabilities."""

from __future__ import annotations

import torch


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path per utterance: argmax per frame, merge repeats, drop blanks."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for seq, n in zip(best, lengths.cpu().tolist()):
        seq = torch.unique_consecutive(seq[:n])
        out.append([int(t) for t in seq if t != blank])
    return out
