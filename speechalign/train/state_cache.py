"""The frozen part of the encoder computed once per utterance and reused in later epochs.

With ``model.freeze.cache_states`` the front end and the first ``model.freeze.first_layers`` layers
run once per training cut (no gradient, no augmentation); later steps start at the first trained
layer from the stored states. SpecAugment then masks the stored states (time spans and channels)
instead of the log-mel features, which the cached layers no longer see.
"""

from __future__ import annotations

import torch
from torch import nn

from speechalign.data.dataset import collate_audio


class StateCache:
    def __init__(self, encoder: nn.Module, layers: int, augment: bool):
        self.encoder, self.layers = encoder, layers
        self.states: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0
        self.augment = None
        if augment:
            from lhotse.dataset import SpecAugment

            # 50 frames/s and d_model channels: the feature masks' spans (0.3 s, 1/8 of the bins), rescaled.
            self.augment = SpecAugment(time_warp_factor=None, num_frame_masks=2, frames_mask_size=15,
                                       max_frames_mask_fraction=0.2, num_feature_masks=2,
                                       features_mask_size=max(1, encoder.dim // 8))

    def batch(self, ids: list[str], wav: torch.Tensor, wav_lens: torch.Tensor,
              training: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) inputs of layer ``layers`` for the batch and their frame counts, computing the
        missing utterances in one pass."""
        missing = [i for i, uid in enumerate(ids) if uid not in self.states]
        self.misses += len(missing)
        self.hits += len(ids) - len(missing)
        if missing:
            was_training = self.encoder.training
            self.encoder.eval()
            try:
                # One utterance at a time: its states then do not depend on what it was batched with (float
                # rounding of padded matmuls), so a resumed run that refills the cache trains bit-identically.
                for i in missing:
                    n = int(wav_lens[i])
                    states, lens = self.encoder.prefix_states(wav[i : i + 1, :n], wav_lens[i : i + 1], self.layers)
                    self.states[ids[i]] = states[0, : int(lens[0])].cpu().clone()
            finally:
                self.encoder.train(was_training)
        x, lens = collate_audio([self.states[uid].numpy() for uid in ids])
        x, lens = x.to(wav.device), lens.to(wav.device)
        if self.augment is not None and training:
            x = self.augment(x)
        return x, lens

    def megabytes(self) -> float:
        return sum(t.numel() * t.element_size() for t in self.states.values()) / 2**20
