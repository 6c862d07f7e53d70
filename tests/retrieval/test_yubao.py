import numpy as np
import pytest

from speechalign.retrieval.vectors import l2_normalize
from speechalign.retrieval.yubao import yubao_protocol
from tests.retrieval.test_seqsim_metrics import reference_seqsim


def fixture(seed=0):
    """3 subgroups x 2 sites, 12 sentences; some sites miss sentences; content = sentence + site noise."""
    rng = np.random.default_rng(seed)
    content = rng.standard_normal((12, 8)) + 1.5   # a shared direction, as encoder states have
    rows = []
    for group in ("gan", "min", "yue"):
        for s in range(2):
            site = f"{group}-{s}"
            missing = {3, 7} if site == "min-1" else ({0} if site == "yue-0" else set())
            for sent in range(12):
                if sent in missing:
                    continue
                t = rng.integers(3, 9)
                frames = content[sent] + rng.standard_normal((t, 8)) * rng.uniform(0.5, 2.0)
                rows.append((site, group, f"{sent:04d}", frames.astype(np.float32)))
    sites, groups, sids, frames = map(list, zip(*rows))
    pooled = l2_normalize(np.stack([f.mean(0) for f in frames]))
    return np.array(sites), np.array(groups), np.array(sids), frames, pooled


def reference_protocol(sites, groups, sids, score, diagonal=False):
    """Straightforward per-pair implementation: loops over subgroup pairs, site pairs and utterances."""
    names = ["gan", "min", "yue"]
    table = np.full((3, 3), np.nan)
    for i, ga in enumerate(names):
        for j, gb in enumerate(names):
            if i == j and not diagonal:
                continue
            values = []
            for a in sorted(set(sites[groups == ga])):
                for b in sorted(set(sites[groups == gb])):
                    if a == b:
                        continue
                    ia = {sids[k]: k for k in range(len(sites)) if sites[k] == a}
                    ib = {sids[k]: k for k in range(len(sites)) if sites[k] == b}
                    shared = sorted(set(ia) & set(ib))
                    hits = 0
                    for s in shared:
                        scores = {t: score(ia[s], ib[t]) for t in shared}
                        best = max(scores.values())
                        winners = [t for t, v in scores.items() if v >= best]
                        hits += winners == [s]   # a tie with a wrong target is a miss
                    values.append(100.0 * hits / len(shared))
            table[i, j] = np.mean(values)
    return table


@pytest.mark.parametrize("diagonal", [False, True])
def test_seqsim_mode_equals_per_pair_reference(diagonal):
    sites, groups, sids, frames, pooled = fixture()
    result = yubao_protocol(sites, groups, sids, pooled, frames, mode="seqsim", diagonal=diagonal)
    assert result.subgroups == ["gan", "min", "yue"]
    expected = reference_protocol(sites, groups, sids, lambda x, y: reference_seqsim(frames[x], frames[y])[2], diagonal)
    np.testing.assert_allclose(result.table, expected, atol=1e-9)
    assert np.isnan(np.diag(result.table)).all() != diagonal
    assert result.site_pairs[0, 1] == 4
    n_shared = {(r[2], r[3]): r[4] for r in result.per_site_pair}
    assert n_shared[("gan-0", "min-1")] == 10 and n_shared[("min-1", "yue-0")] == 9


def test_pooled_mode_equals_reference_and_rerank_full_shortlist_equals_seqsim():
    sites, groups, sids, frames, pooled = fixture(1)
    result = yubao_protocol(sites, groups, sids, pooled, frames, mode="pooled")
    expected = reference_protocol(sites, groups, sids, lambda x, y: float(pooled[x] @ pooled[y]))
    np.testing.assert_allclose(result.table, expected, atol=1e-9)
    full = yubao_protocol(sites, groups, sids, pooled, frames, mode="seqsim").table
    wide = yubao_protocol(sites, groups, sids, pooled, frames, mode="rerank", rerank_k=50).table
    np.testing.assert_allclose(wide, full, atol=1e-9)
    narrow = yubao_protocol(sites, groups, sids, pooled, frames, mode="rerank", rerank_k=2).table
    assert np.nanmax(np.abs(narrow - full)) < 50


def test_site_in_two_subgroups_is_an_error():
    sites, groups, sids, frames, pooled = fixture()
    groups = groups.copy()
    groups[0] = "min"
    with pytest.raises(ValueError, match="appears in subgroups"):
        yubao_protocol(sites, groups, sids, pooled, frames)


@pytest.mark.parametrize("mode, k", [("seqsim", 10), ("rerank", 2)])
def test_worker_processes_match_single_process(mode, k):
    sites, groups, sids, frames, pooled = fixture(2)
    one = yubao_protocol(sites, groups, sids, pooled, frames, mode=mode, rerank_k=k, workers=1)
    two = yubao_protocol(sites, groups, sids, pooled, frames, mode=mode, rerank_k=k, workers=2)
    np.testing.assert_array_equal(one.table, two.table)
    assert one.per_site_pair == two.per_site_pair
