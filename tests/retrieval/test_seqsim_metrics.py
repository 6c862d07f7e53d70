import numpy as np
import pytest

from speechalign.retrieval.metrics import ranks, summarize
from speechalign.retrieval.seqsim import FrameSet, seqsim_block, seqsim_pairs


def reference_seqsim(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Plain per-pair definition, kept here as the oracle."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    s = x @ y.T
    p, r = s.max(axis=1).mean(), s.max(axis=0).mean()
    return p, r, 2 * p * r / (p + r)


@pytest.mark.parametrize("seed, max_bytes", [(0, 256 << 20), (1, 4096), (2, 1)])
def test_block_matches_per_pair_reference(seed, max_bytes):
    rng = np.random.default_rng(seed)
    qs = [rng.standard_normal((rng.integers(1, 40), 16)).astype(np.float32) for _ in range(7)]
    gs = [rng.standard_normal((rng.integers(1, 40), 16)).astype(np.float32) for _ in range(5)]
    out = seqsim_block(FrameSet.from_list(qs), FrameSet.from_list(gs), max_bytes=max_bytes)
    for i, q in enumerate(qs):
        for j, g in enumerate(gs):
            p, r, f = reference_seqsim(q, g)
            assert out["precision"][i, j] == pytest.approx(p, abs=1e-5)
            assert out["recall"][i, j] == pytest.approx(r, abs=1e-5)
            assert out["f1"][i, j] == pytest.approx(f, abs=1e-5)
    pairs = rng.permutation(np.array([[i, j] for i in range(7) for j in range(5) if (i + j) % 2]))
    np.testing.assert_allclose(seqsim_pairs(FrameSet.from_list(qs), FrameSet.from_list(gs), pairs),
                               out["f1"][pairs[:, 0], pairs[:, 1]], atol=1e-6)


def test_f1_symmetric_and_identity_is_one():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((rng.integers(2, 20), 8)).astype(np.float32) for _ in range(4)]
    f = seqsim_block(FrameSet.from_list(xs), FrameSet.from_list(xs))["f1"]
    np.testing.assert_allclose(f, f.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(f), 1.0, atol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="utterance b has no frames"):
        FrameSet.from_list([np.ones((3, 4)), np.ones((0, 4))], ids=["a", "b"])
    with pytest.raises(ValueError, match="query dim 4 != gallery dim 5"):
        seqsim_block(FrameSet.from_list([np.ones((3, 4))]), FrameSet.from_list([np.ones((3, 5))]))
    with pytest.raises(ValueError, match="empty"):
        FrameSet.from_list([])


def test_ranks_and_metrics_hand_computed():
    scores = np.array([[0.9, 0.5, 0.1],     # correct 0 -> rank 1
                       [0.9, 0.5, 0.1],     # correct 1 -> rank 2
                       [0.2, 0.2, 0.1],     # correct 0 ties with incorrect 1 -> rank 2 (pessimistic)
                       [0.3, 0.2, 0.1]])    # correct 2 -> rank 3
    correct = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=bool)
    r = ranks(scores, correct)
    assert r.tolist() == [1, 2, 2, 3]
    m = summarize(r, ks=(1, 2))
    assert m["R@1"] == 0.25 and m["R@2"] == 0.75
    assert m["MRR"] == pytest.approx((1 + 0.5 + 0.5 + 1 / 3) / 4)


def test_constant_scores_never_count_as_hits():
    scores = np.zeros((3, 3))
    assert (ranks(scores, np.eye(3, dtype=bool)) == 3).all()
    no_correct = ranks(np.zeros((1, 2)), np.zeros((1, 2), dtype=bool))
    assert np.isinf(no_correct).all()
