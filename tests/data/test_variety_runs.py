"""data.pack.group=variety: the sampler's batches hold one variety each, so windows of one variety are full."""


import numpy as np
from lhotse import CutSet

from speechalign.data.dataset import VarietyRunSampler, train_sampler
from speechalign.data.manifest import cut_meta
from tests.data.samplers import assert_restore_continues, batches
from tests.data.test_packing import planted


def corpus(n=300, seed=0) -> CutSet:
    rng = np.random.default_rng(seed)
    return CutSet.from_cuts(planted(rng.uniform(1, 6, n), varieties=("A", "B", "C", "D")))


def test_each_batch_is_one_variety_and_the_epoch_holds_every_cut_once():
    cuts = corpus()
    sampler = train_sampler(cuts, 40.0, 1, True, seed=3, pack="variety")
    out = list(sampler)
    ids = [c.id for b in out for c in b]
    assert len(ids) == len(set(ids))
    dropped = sampler.diagnostics.current_epoch_stats.discarded_cuts
    assert len(ids) + dropped == len(cuts) and dropped < 20         # drop_last: one partial batch at most
    one_variety = [len({cut_meta(c)["dialect"] for c in b}) == 1 for b in out]
    assert all(one_variety[:-4])            # only the epoch's leftover partial runs (4 varieties) may mix
    for b in out[:-4]:
        seconds = sum(c.duration for c in b)
        assert seconds > 40.0 and seconds - b[-1].duration <= 40.0   # closed by the cut that passed 40 s
    assert isinstance(sampler, VarietyRunSampler)


def test_same_seed_same_batches_and_the_next_epoch_another_order():
    cuts = corpus()
    make = lambda seed: train_sampler(cuts, 40.0, 1, True, seed=seed, pack="variety")
    first = make(5)
    epoch0 = batches(first)
    assert epoch0 == batches(make(5)) and epoch0 != batches(make(6))
    first.set_epoch(1)
    assert batches(first) != epoch0


def test_a_restored_sampler_continues_with_the_batches_an_uninterrupted_one_yields():
    cuts = corpus()
    assert_restore_continues(lambda: train_sampler(cuts, 40.0, 1, True, seed=1, pack="variety"), taken=5)
