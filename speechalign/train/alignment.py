"""Cross-dialect alignment (``model.align``): InfoNCE over the utterances of a batch, where an utterance's
positives are the same sentence (``sentence_id``) in other varieties and its negatives the batch's other
sentences. Two similarities: the cosine of mean-pooled states, and a differentiable SeqSim, the YuBao benchmark's
score (frame cosine matrix; precision = mean over one utterance's frames of the best match in the other, recall
the other way, F1) with each maximum softened to ``t * logsumexp(x / t)``.

The encoder reads packed windows as well as single utterances: each utterance is pooled over its own frames,
as ``embed --pack`` pools them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def part_frames(states: torch.Tensor, lengths: torch.Tensor, part_spans: list[list[tuple[float, float]]],
                frame_shift: float) -> list[torch.Tensor]:
    """Each utterance's own frames ((T_i, D) views of ``states``, (B, T, D)), from its (start, end) second in
    its batch item; at least one frame, never past the item's ``lengths``."""
    frames = []
    for b, where in enumerate(part_spans):
        n = int(lengths[b])
        for start, end in where:
            first = min(round(start / frame_shift), n - 1)
            last = max(first + 1, min(round(end / frame_shift), n))
            frames.append(states[b, first:last])
    return frames


def pair_masks(sentences: list[str | None], varieties: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, compared), N x N: j is a positive of i when both have one sentence id and their varieties
    differ; i is compared with every other utterance but those of its own sentence in its own variety (another
    reading of the same words: neither a pair to learn nor a negative)."""
    n = len(sentences)
    sid = {s: k for k, s in enumerate(dict.fromkeys(s for s in sentences if s))}
    ids = torch.tensor([sid[s] if s else -1 - i for i, s in enumerate(sentences)])
    var = {v: k for k, v in enumerate(dict.fromkeys(varieties))}
    vs = torch.tensor([var[v] for v in varieties])
    same_sentence = ids[:, None] == ids[None, :]
    same_variety = vs[:, None] == vs[None, :]
    positive = same_sentence & ~same_variety
    compared = ~(same_sentence & same_variety) & ~torch.eye(n, dtype=torch.bool)
    return positive, compared


def info_nce(similarity: torch.Tensor, positive: torch.Tensor, compared: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """Multi-positive InfoNCE summed over the rows (anchors) of ``similarity``: each row's mean over its
    positives of -log softmax over what it is compared with. Every row must have a positive."""
    logits = (similarity / temperature).masked_fill(~compared, float("-inf"))
    log_prob = logits - logits.logsumexp(1, keepdim=True)
    return -(log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1)).sum()


def pooled_similarity(frames: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """Cosine of mean-pooled frames, ``rows`` against all: (len(rows), N)."""
    pooled = nn.functional.normalize(torch.stack([f.float().mean(0) for f in frames]), dim=-1)
    return pooled[rows] @ pooled.T


def soft_seqsim(frames: list[torch.Tensor], rows: torch.Tensor, frame_temperature: float,
                stride: int = 1) -> torch.Tensor:
    """Differentiable SeqSim F1, ``rows`` against all: (len(rows), N). Frames are first averaged in groups of
    ``stride``; each anchor's frame matrices are recomputed in the backward pass (memory: N x T x T at a time)."""
    def strided(f: torch.Tensor) -> torch.Tensor:
        if stride == 1:
            return f.float()
        return nn.functional.avg_pool1d(f.float().T[None], stride, stride, ceil_mode=True)[0].T

    x = [nn.functional.normalize(strided(f), dim=-1) for f in frames]
    mask = nn.utils.rnn.pad_sequence([torch.ones(len(f), dtype=torch.bool, device=f.device) for f in x],
                                     batch_first=True)
    x = nn.utils.rnn.pad_sequence(x, batch_first=True)                     # (N, T, D)
    return torch.stack([checkpoint(_seqsim_row, x[a], mask[a], x, mask, frame_temperature, use_reentrant=False)
                        for a in rows.tolist()])


def _seqsim_row(anchor: torch.Tensor, anchor_mask: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                t: float) -> torch.Tensor:
    """Soft SeqSim F1 of one anchor (T, D) against every utterance (N, T, D): (N,)."""
    sim = torch.einsum("td,nsd->nts", anchor, x) / t                       # (N, T_anchor, T_other)
    best_other = t * sim.masked_fill(~mask[:, None, :], float("-inf")).logsumexp(2)     # (N, T_anchor)
    best_anchor = t * sim.masked_fill(~anchor_mask[None, :, None], float("-inf")).logsumexp(1)  # (N, T_other)
    # A mean best cosine at or below 0 is no match at all: held at a small positive floor, F1 stays in (0, 1]
    # (with a negative side, P + R can pass through 0 and the quotient blow up).
    precision = ((best_other * anchor_mask).sum(1) / anchor_mask.sum()).clamp(min=1e-3)
    recall = ((best_anchor * mask).sum(1) / mask.sum(1)).clamp(min=1e-3)
    return 2 * precision * recall / (precision + recall)


class CrossDialectAlignment(nn.Module):
    """The ``model.align`` loss term: InfoNCE over the batch's utterances (each pooled over its own frames of
    encoder layer ``layer``), summed over anchors and divided by the batch size, as the hybrid loss is."""

    name = "align"

    def __init__(self, kind: str, weight: float, layer: int, temperature: float, frame_temperature: float,
                 frame_stride: int, frame_shift: float):
        super().__init__()
        if kind not in ("pooled", "seqsim"):
            raise ValueError(f"model.align.kind: expected 'pooled' or 'seqsim', got {kind!r}")
        self.kind, self.weight, self.layer, self.temperature = kind, weight, layer, temperature
        self.frame_temperature, self.frame_stride, self.frame_shift = frame_temperature, frame_stride, frame_shift

    def forward(self, out: dict, batch=None) -> torch.Tensor | None:
        enc = out.get("encoder")
        if enc is None or batch is None or not batch.part_spans:
            return None
        frames = part_frames(enc.hidden_states[self.layer], enc.speech_lengths, batch.part_spans, self.frame_shift)
        positive, compared = pair_masks([s for item in batch.part_sentences for s in item],
                                        [d for item in batch.part_dialects for d in item])
        rows = positive.any(1).nonzero()[:, 0]
        if len(rows) == 0:
            return None
        if self.kind == "pooled":
            similarity = pooled_similarity(frames, rows)
        else:
            similarity = soft_seqsim(frames, rows, self.frame_temperature, self.frame_stride)
        device = similarity.device
        return info_nce(similarity, positive[rows].to(device), compared[rows].to(device),
                        self.temperature) / len(batch.part_spans)
