"""Parallel utterances placed together in the training stream, so that a batch holds positives for a
cross-dialect alignment term (``model.align``): k utterances of one sentence, each in another variety.

A corpus read at many sites (goo-gi, YuBao, FLEURS) has the same ``sentence_id`` in several varieties; a plain
shuffle leaves most sentences alone in their batch. Like :class:`~speechalign.data.dataset.VarietyRuns`, this is
a reordering of the shuffled stream that depends only on the seed and the epoch, so resume and DDP ranks (which
replay the same stream) see the same groups.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Iterator

from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.utils import streaming_shuffle

from speechalign.data.manifest import cut_meta


class ParallelGroups:
    """The training stream shuffled per epoch (as lhotse's samplers shuffle it), reordered so that whenever k
    varieties of one sentence have arrived, one utterance of each comes out, one after another. A cut whose
    sentence is read in fewer than k varieties (or that has no ``sentence_id``) passes straight through, so the
    corpora mix as in a plain shuffle; so does the oldest waiting cut once ``buffer_size`` cuts wait (memory stays
    bounded). What still waits when the epoch ends follows in the order it arrived."""

    def __init__(self, cuts: CutSet, k: int, seed: int, buffer_size: int):
        if k < 2:
            raise ValueError(f"data.parallel: expected k >= 2 varieties per sentence, got {k}")
        self.cuts, self.k, self.seed, self.buffer_size = cuts, k, seed, buffer_size
        self.epoch = 0
        self._groupable: set[str] | None = None

    def groupable(self) -> set[str]:
        """The sentence ids read in at least k varieties (one pass over the cuts' metadata, kept): any other
        cut passes straight through, instead of waiting for partners that never come."""
        if self._groupable is None:
            varieties: dict[str, set[str]] = {}
            for cut in self.cuts:
                meta = cut_meta(cut)
                if meta["sentence_id"]:
                    varieties.setdefault(meta["sentence_id"], set()).add(meta["dialect"])
            self._groupable = {s for s, v in varieties.items() if len(v) >= self.k}
        return self._groupable

    def __iter__(self) -> Iterator[Cut]:
        groupable = self.groupable()
        waiting: OrderedDict[str, tuple[str, str]] = OrderedDict()   # cut id -> (sentence, variety), oldest first
        by_sentence: dict[str, dict[str, list[Cut]]] = {}           # sentence -> variety -> cuts, in arrival order
        for cut in streaming_shuffle(iter(self.cuts), bufsize=self.buffer_size,
                                     rng=random.Random(self.seed + self.epoch)):
            meta = cut_meta(cut)
            sentence = meta["sentence_id"]
            if sentence not in groupable:
                yield cut
                continue
            varieties = by_sentence.setdefault(sentence, {})
            varieties.setdefault(meta["dialect"], []).append(cut)
            waiting[cut.id] = (sentence, meta["dialect"])
            if len(varieties) >= self.k:
                for variety in list(varieties)[: self.k]:
                    yield self._take(by_sentence, waiting, sentence, variety)
            while len(waiting) > self.buffer_size:
                oldest = next(iter(waiting.values()))
                yield self._take(by_sentence, waiting, *oldest)
        while waiting:
            yield self._take(by_sentence, waiting, *next(iter(waiting.values())))

    @staticmethod
    def _take(by_sentence: dict, waiting: OrderedDict, sentence: str, variety: str) -> Cut:
        """The oldest waiting cut of one sentence and variety, forgotten."""
        varieties = by_sentence[sentence]
        cut = varieties[variety].pop(0)
        if not varieties[variety]:
            del varieties[variety]
        if not varieties:
            del by_sentence[sentence]
        del waiting[cut.id]
        return cut
