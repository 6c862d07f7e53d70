"""A window's text split back onto its parts by CTC forced alignment: golden cases on planted posteriors."""

import torch

from speechalign.decode.align import char_frames, split_text

VOCAB = {"<blank>": 0, "<unk>": 1, "<sos/eos>": 2, "甲": 3, "乙": 4, "丙": 5}


def planted(peaks: list[tuple[int, int]], frames: int = 40) -> torch.Tensor:
    """(T, V) log-probabilities: blank everywhere but token ``t`` at frame ``f`` for each (f, t)."""
    lp = torch.full((frames, len(VOCAB)), -20.0)
    lp[:, 0] = 0.0
    for f, t in peaks:
        lp[f] = -20.0
        lp[f, t] = 0.0
    return lp.log_softmax(-1)


def test_each_character_goes_to_the_part_that_holds_its_frame():
    lp = planted([(3, 3), (6, 4), (25, 5)])
    assert char_frames("甲乙丙", lp, VOCAB) == [3, 6, 25]
    assert split_text("甲乙丙", lp, VOCAB, [(0, 10), (20, 30)]) == ["甲乙", "丙"]
    # a frame in the gap goes to the nearer part
    assert split_text("甲乙丙", planted([(3, 3), (17, 4), (25, 5)]), VOCAB, [(0, 10), (20, 30)]) == ["甲", "乙丙"]


def test_unaligned_characters_follow_the_one_before_and_traditional_forms_align():
    lp = planted([(3, 3), (25, 5)])
    # "，" and "x" are not in the CTC vocabulary: they stay with 甲
    assert split_text("甲，x丙", lp, VOCAB, [(0, 10), (20, 30)]) == ["甲，x", "丙"]
    assert split_text("漢", planted([(2, 3)]), {**VOCAB, "汉": 3}, [(0, 5), (8, 9)]) == ["漢", ""]


def test_a_text_the_head_cannot_align_is_split_in_proportion_to_time():
    lp = planted([])
    assert split_text("ab", lp, VOCAB, [(0, 10), (30, 40)]) == ["a", "b"]
    assert split_text("甲乙", lp[:1], VOCAB, [(0, 0.5), (0.6, 1)]) == ["甲", "乙"]   # 2 tokens on 1 frame
    assert split_text("甲乙丙", lp, VOCAB, [(0, 40)]) == ["甲乙丙"]
