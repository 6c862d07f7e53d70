import math

import numpy as np
import pytest
import torch

from speechalign.decode.attention import _ctc_prefix_extend
from speechalign.decode.ctc import ctc_greedy, ctc_prefix_beam


def test_prefix_beam_beats_greedy_on_hand_built_posterior():
    # Two frames, p(blank)=0.6, p(a)=0.4 each. Best path: blank blank -> "" (0.36).
    # Summed over alignments: "a" = aa + a_ + _a = 0.16 + 0.24 + 0.24 = 0.64.
    lp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert ctc_greedy(torch.from_numpy(lp)[None], torch.tensor([2])) == [[]]
    nbest = ctc_prefix_beam(lp, beam=2)
    assert nbest[0][0] == (1,) and nbest[0][1] == pytest.approx(math.log(0.64))
    assert nbest[1][0] == () and nbest[1][1] == pytest.approx(math.log(0.36))


def test_repeated_token_needs_blank():
    # Frames a, blank, a (all certain) -> "aa"; frames a, a -> "a".
    eye = np.log(np.eye(3) * 0.98 + 0.01)
    lp = eye[[1, 0, 1]]
    assert ctc_prefix_beam(lp, beam=4)[0][0] == (1, 1)
    assert ctc_prefix_beam(eye[[1, 1]], beam=4)[0][0] == (1,)


def test_beam_one_equals_greedy_and_large_beam_agrees_on_peaky_posteriors():
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = rng.standard_normal((30, 8)) * 4
        lp = torch.from_numpy(logits).log_softmax(-1).numpy()
        greedy = ctc_greedy(torch.from_numpy(lp)[None], torch.tensor([30]))[0]
        assert list(ctc_prefix_beam(lp, beam=1)[0][0]) == greedy
        best = ctc_prefix_beam(lp, beam=16, token_prune=8)[0]
        assert best[1] >= ctc_prefix_beam(lp, beam=1)[0][1] - 1e-9


def test_ctc_prefix_scores_sum_to_ctc_loss():
    torch.manual_seed(0)
    T, V, blank = 12, 6, 0
    lp = torch.randn(T, V).log_softmax(-1)
    target = [3, 3, 1, 4]
    r = torch.full((T, 2, 1), -math.inf)
    r[:, 1, 0] = torch.cumsum(lp[:, blank], 0)
    last = -1
    for c in target:
        _, r = _ctc_prefix_extend(lp, r, torch.tensor([last]), torch.tensor([c]), blank)
        last = c
    full = torch.logaddexp(r[-1, 0, 0], r[-1, 1, 0])
    ref = -torch.nn.functional.ctc_loss(lp[:, None], torch.tensor([target]), torch.tensor([T]),
                                        torch.tensor([len(target)]), blank=blank, reduction="sum")
    torch.testing.assert_close(full, ref, atol=1e-4, rtol=1e-5)
