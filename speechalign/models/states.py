"""What every encoder returns: each layer's states and their valid frames (``speechalign.models.encoders``
re-exports both names)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EncoderOutput:
    hidden_states: list[torch.Tensor]   # num_layers + 1 tensors (B, T, D): input embedding, then each layer
    lengths: torch.Tensor               # (B,) valid frames: what the decoder and CTC read
    speech: torch.Tensor | None = None  # (B,) of them, the input speech's: without appended silence (whisper
                                        # tail_seconds) or the 30-s window's padding (pad30); None = all

    @property
    def last(self) -> torch.Tensor:
        return self.hidden_states[-1]

    @property
    def speech_lengths(self) -> torch.Tensor:
        """(B,) frames of the input speech, without appended silence or padding: what embeddings pool over."""
        return self.lengths if self.speech is None else self.speech

    def rows(self, index: torch.Tensor) -> "EncoderOutput":
        """The utterances at ``index`` of the batch (a decoder reads a subset, e.g. the rows a router keeps)."""
        return EncoderOutput([h[index] for h in self.hidden_states], self.lengths[index],
                             None if self.speech is None else self.speech[index])


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) True at padded positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]
