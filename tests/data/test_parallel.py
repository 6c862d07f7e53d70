"""data.parallel: k varieties of one sentence come together in the training stream, in every epoch, after a
resume and on every DDP rank; a packed window never holds two of them."""


import numpy as np
import pytest
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

from speechalign.data.dataset import ParallelSampler, train_sampler
from speechalign.data.manifest import cut_meta
from speechalign.data.packing import WindowPacker
from tests.data.samplers import assert_restore_continues, batches
from speechalign.data.parallel import ParallelGroups

VARIETIES = ("A", "B", "C", "D")


def parallel_cuts(sentences=30, seed=0, loners=10, solo=False) -> CutSet:
    """Each sentence read in the four varieties, plus ``loners`` cuts without a sentence id (with ``solo``: each
    with a sentence id of its own, as a corpus read in one variety has)."""
    rng = np.random.default_rng(seed)
    cuts = []
    for i in range(sentences * len(VARIETIES) + loners):
        d = float(rng.uniform(1, 5))
        sentence = f"s{i // len(VARIETIES)}" if i < sentences * len(VARIETIES) else (f"solo{i}" if solo else None)
        rec = Recording(id=f"r{i}", sources=[], sampling_rate=16000, num_samples=round(d * 16000), duration=d)
        sup = SupervisionSegment(id=f"c{i}", recording_id=rec.id, start=0, duration=d, text=f"t{i}",
                                 language=VARIETIES[i % len(VARIETIES)],
                                 custom={"sentence_id": sentence} if sentence else None)
        cuts.append(MonoCut(id=f"c{i}", start=0, duration=d, channel=0, recording=rec, supervisions=[sup]))
    return CutSet.from_cuts(cuts)


def groups_of(stream: list, k: int) -> list[list]:
    """The stream cut into its runs of sentence-id cuts, k at a time (cuts without an id on their own)."""
    out, run = [], []
    for cut in stream:
        if not cut_meta(cut)["sentence_id"]:
            out.append([cut])
            continue
        run.append(cut)
        if len(run) == k:
            out.append(run)
            run = []
    return out + ([run] if run else [])


@pytest.mark.parametrize("k", [2, 3])
def test_k_varieties_of_one_sentence_come_one_after_another_and_every_cut_once(k):
    cuts = parallel_cuts()
    stream = list(ParallelGroups(cuts, k, seed=0, buffer_size=1000))
    assert sorted(c.id for c in stream) == sorted(c.id for c in cuts)
    left = 30 * (len(VARIETIES) % k)             # a sentence's readings that make no group of k: the epoch's end
    groups = [g for g in groups_of(stream[: len(stream) - left], k) if cut_meta(g[0])["sentence_id"]]
    assert len(groups) == 30 * (len(VARIETIES) // k)
    assert all(cut_meta(c)["sentence_id"] for c in stream[len(stream) - left:])
    for group in groups:
        assert len({cut_meta(c)["sentence_id"] for c in group}) == 1
        assert len({cut_meta(c)["dialect"] for c in group}) == k


def test_a_sentence_read_in_fewer_than_k_varieties_does_not_wait_for_the_epochs_end():
    cuts = parallel_cuts(loners=60, solo=True)
    stream = [c.id for c in ParallelGroups(cuts, 2, seed=0, buffer_size=1000)]
    solo = [i for i, c in enumerate(stream) if int(c[1:]) >= 120]
    assert len(solo) == 60 and np.mean(solo) < 0.65 * len(stream)    # spread as a shuffle spreads them


def test_a_small_buffer_bounds_what_waits():
    cuts = parallel_cuts(sentences=60, loners=0)
    stream = list(ParallelGroups(cuts, 4, seed=1, buffer_size=5))
    assert sorted(c.id for c in stream) == sorted(c.id for c in cuts)     # released alone, never dropped


def paired_share(batch_ids: list[list[str]], cuts: CutSet) -> float:
    """Share of sentence-id cuts whose batch also holds the same sentence in another variety."""
    meta = {c.id: cut_meta(c) for c in cuts}
    paired = total = 0
    for b in batch_ids:
        for i in b:
            if meta[i]["sentence_id"]:
                total += 1
                paired += any(meta[j]["sentence_id"] == meta[i]["sentence_id"] and meta[j]["dialect"] != meta[i]["dialect"]
                              for j in b)
    return paired / total


@pytest.mark.parametrize("pack", [None, "mixed"])
def test_batches_hold_the_pairs_and_a_new_epoch_reorders_them(pack):
    cuts = parallel_cuts()
    sampler = train_sampler(cuts, 40.0, 1, True, seed=3, pack=pack, parallel=2)
    assert isinstance(sampler, ParallelSampler)
    epoch0 = batches(sampler)
    assert paired_share(epoch0, cuts) > 0.85
    sampler.set_epoch(1)
    epoch1 = batches(sampler)
    assert epoch1 != epoch0 and paired_share(epoch1, cuts) > 0.85
    # without data.parallel, a shuffle leaves most sentences alone in their batch
    assert paired_share(batches(train_sampler(cuts, 40.0, 1, True, seed=3, pack=pack)), cuts) < 0.5


def test_a_restored_sampler_continues_with_the_batches_an_uninterrupted_one_yields():
    cuts = parallel_cuts()
    assert_restore_continues(lambda: train_sampler(cuts, 20.0, 1, True, seed=1, pack="mixed", parallel=2), taken=4)


def test_ddp_ranks_split_the_batches_and_each_keeps_the_pairs():
    cuts = parallel_cuts(sentences=60)
    ranks = [batches(train_sampler(cuts, 20.0, 1, True, seed=2, pack="mixed", parallel=2, world_size=2, rank=r))
             for r in (0, 1)]
    ids = [{i for b in r for i in b} for r in ranks]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert all(paired_share(r, cuts) > 0.85 for r in ranks)


def test_a_window_never_holds_two_utterances_of_one_sentence():
    cuts = list(ParallelGroups(parallel_cuts(), 4, seed=0, buffer_size=1000))
    windows = WindowPacker(30.0, 0.3, apart_sentences=True).plan(cuts)
    assert sorted(c.id for w in windows for c in w.cuts) == sorted(c.id for c in cuts)
    for w in windows:
        sentences = [cut_meta(c)["sentence_id"] for c in w.cuts if cut_meta(c)["sentence_id"]]
        assert len(sentences) == len(set(sentences))
    together = WindowPacker(30.0, 0.3).plan(cuts)   # without the rule, a group of four fills one window
    assert any(len({cut_meta(c)["sentence_id"] for c in w.cuts}) < len(w.cuts) for w in together)


def test_windows_of_one_variety_hold_no_pair():
    with pytest.raises(ValueError, match="data.pack.group=mixed"):
        train_sampler(parallel_cuts(), 20.0, 1, True, seed=0, pack="variety", parallel=2)
