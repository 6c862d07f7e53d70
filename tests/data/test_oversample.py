"""data.oversample: a variety's cuts seen n times per epoch, as renamed copies mixed in by the sampler."""

from collections import Counter

import pytest
from lhotse import CutSet

from speechalign.config import ConfigError, load_config
from speechalign.data.dataset import oversampled, train_sampler
from speechalign.data.manifest import cut_meta
from tests.data.test_packing import planted


def test_each_cut_of_the_variety_comes_n_times_with_unique_ids_and_the_rest_once():
    cuts = CutSet.from_cuts(planted([1.0 + i / 10 for i in range(12)]))
    out = list(oversampled(cuts, {"A": 3}))
    assert len({c.id for c in out}) == len(out)
    seen = Counter(c.id.split("#")[0] for c in out)
    for cut in cuts:
        assert seen[cut.id] == (3 if cut_meta(cut)["dialect"] == "A" else 1)
    copies = [c for c in out if "#" in c.id]
    assert {cut_meta(c)["dialect"] for c in copies} == {"A"}
    assert {cut_meta(c)["text"] for c in copies} == {cut_meta(c)["text"] for c in cuts if cut_meta(c)["dialect"] == "A"}


def test_the_shuffling_sampler_mixes_the_copies_into_the_epoch():
    cuts = CutSet.from_cuts(planted([1.0] * 30))
    sampler = train_sampler(oversampled(cuts, {"B": 4}), 6.0, 1, True, seed=0, pack="mixed")
    order = [c.id for batch in sampler for c in batch]
    first_half = order[: len(order) // 2]
    assert sum("#" in i for i in first_half) > 0
    assert len(set(order)) == len(order) >= 50   # 60 cuts; drop_last leaves a partial batch out


def test_a_count_below_one_is_refused_naming_the_variety():
    with pytest.raises(ConfigError, match="data.oversample.Mandarin"):
        load_config(None, ["data.oversample={Mandarin: 0}"])
    with pytest.raises(ConfigError, match="data.oversample"):
        load_config(None, ["data.oversample={Mandarin: many}"])
