import numpy as np
import pytest

from speechalign.retrieval.search import IndexConfig, build_index, retrieve, search
from speechalign.retrieval.vectors import center, l2_normalize, procrustes


def planted(n_sent=40, dim=32, noise=0.05, seed=0, offset=0.0, rotate=False):
    """Dialects A and B: B's item i is A's item i plus noise (optionally rotated and offset)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n_sent, dim)).astype(np.float32)
    b = a + noise * rng.standard_normal(a.shape).astype(np.float32)
    if rotate:
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        b = b @ q.astype(np.float32)
    b += offset
    vectors = np.concatenate([a, b])
    dialects = np.array(["A"] * n_sent + ["B"] * n_sent)
    sids = np.array([f"s{i}" for i in range(n_sent)] * 2)
    frames = [np.stack([v + 0.01 * rng.standard_normal(dim), v]).astype(np.float32) for v in vectors]
    return vectors, frames, dialects, sids


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
@pytest.mark.parametrize("protocol", ["pooled", "rerank"])
def test_planted_neighbour_found_by_every_index(kind, protocol):
    vectors, frames, dialects, sids = planted(n_sent=200)
    cfg = IndexConfig(kind=kind, nlist=4, nprobe=4, ef_search=64)
    rows = retrieve(vectors, frames, dialects, sids, protocol, cfg, rerank_k=5)
    assert [(r["query"], r["gallery"]) for r in rows] == [("A", "B"), ("B", "A"), ("mean", "mean")]
    assert all(r["R@1"] == 1.0 and r["MRR"] == 1.0 and r["queries"] == 200 for r in rows[:2])


def test_seqsim_protocol_planted_and_skips_counted():
    vectors, frames, dialects, sids = planted(n_sent=30)
    sids[:3] = ["only-in-A-1", "only-in-A-2", "only-in-A-3"]
    rows = retrieve(None, frames, dialects, sids, "seqsim")
    a_to_b = rows[0]
    assert a_to_b["skipped"] == 3 and a_to_b["queries"] == 27 and a_to_b["R@1"] == 1.0


def test_bad_inputs_are_clear():
    vectors, frames, dialects, sids = planted()
    with pytest.raises(ValueError, match="empty gallery"):
        build_index(np.zeros((0, 4), np.float32), IndexConfig())
    index = build_index(vectors, IndexConfig())
    with pytest.raises(ValueError, match="query dimension 5 does not match the index dimension 32"):
        search(index, np.ones((2, 5), np.float32), 3)
    with pytest.raises(ValueError, match="needs frame states"):
        retrieve(vectors, None, dialects, sids, "seqsim")
    with pytest.raises(ValueError, match="no dialect pair"):
        retrieve(vectors, None, np.array(["A"] * len(sids)), sids, "pooled")


def _dialect_pair(n, q, offset, seed):
    """A: random sentences; B = A @ q + offset + small noise; sentence ids shared."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, q.shape[0])).astype(np.float32) + 1.0
    b = a @ q + offset + 0.01 * rng.standard_normal(a.shape).astype(np.float32)
    return (np.concatenate([a, b]), np.array(["A"] * n + ["B"] * n), np.array([f"s{i}" for i in range(n)] * 2))


def test_centering_removes_a_dialect_offset():
    dim = 16
    offset = np.random.default_rng(1).standard_normal(dim).astype(np.float32) * 20
    vectors, dialects, sids = _dialect_pair(80, np.eye(dim, dtype=np.float32), offset, seed=2)
    plain = retrieve(l2_normalize(vectors), None, dialects, sids, "pooled")[0]["R@1"]
    centered = retrieve(l2_normalize(center(vectors, dialects)), None, dialects, sids, "pooled")[0]["R@1"]
    assert plain < 0.9 and centered == 1.0


def test_procrustes_from_disjoint_pairs_undoes_rotation_plus_offset():
    dim = 16
    rng = np.random.default_rng(3)
    q = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    offset = rng.standard_normal(dim).astype(np.float32) * 6
    test_v, dialects, sids = _dialect_pair(80, q, offset, seed=4)
    train_v, t_dialects, _ = _dialect_pair(300, q, offset, seed=5)          # disjoint sentences
    plain = retrieve(l2_normalize(test_v), None, dialects, sids, "pooled")[0]["R@1"]
    only_center = retrieve(l2_normalize(center(test_v, dialects)), None, dialects, sids, "pooled")[0]["R@1"]
    t = l2_normalize(center(train_v, t_dialects))
    maps = {("A", "B"): procrustes(t[:300], t[300:]), ("B", "A"): procrustes(t[300:], t[:300])}
    rows = retrieve(l2_normalize(center(test_v, dialects)), None, dialects, sids, "pooled", maps=maps)
    assert plain < 0.5 and only_center < 0.5
    assert rows[0]["R@1"] == 1.0 and rows[1]["R@1"] == 1.0


@pytest.mark.parametrize("protocol", ["pooled", "seqsim", "rerank"])
def test_neighbours_are_each_querys_best_items_by_score(protocol):
    vectors, frames, dialects, sids = planted(n_sent=20, noise=1.5, seed=3)
    vectors = l2_normalize(vectors)
    neighbours = []
    rows = retrieve(vectors, frames, dialects, sids, protocol, rerank_k=8, neighbours=neighbours, top_k=5)
    per_query = {}
    for a, b, q, r, g, s, c in neighbours:
        per_query.setdefault((a, b, q), []).append((r, g, s, c))
        assert dialects[q] == a and dialects[g] == b and c == (sids[g] == sids[q])
    assert len(per_query) == 40 and all(len(v) == 5 for v in per_query.values())
    for items in per_query.values():
        assert [r for r, *_ in items] == [1, 2, 3, 4, 5]
        assert all(x[2] >= y[2] for x, y in zip(items, items[1:]))
    # R@1 is the fraction of queries whose first listed neighbour is correct (no ties here).
    top1 = [items[0][3] for (a, _, _), items in per_query.items() if a == "A"]
    assert rows[0]["R@1"] == pytest.approx(np.mean(top1)) and 0 < rows[0]["R@1"] < 1
