import functools
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechalign.text import is_han, normalize


@pytest.mark.parametrize("raw, expected", [
    ("我們去了「台灣」！", "我们去了台湾"),
    ("ＡＢＣ１２３，ｄｅｆ", "abc123def"),
    ("Hello, World 2026", "helloworld2026"),
    ("伊來一霎仔久就轉去矣。/伊來一下。", "伊来一霎仔久就转去矣"),
    ("我去。/我走。你來。/你到。", "我去你来"),
    ("  \t\n", ""),
    ("…—·", ""),
])
def test_golden(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("trad, simp", [
    ("這個不行，那個不可以。", "这个不行，那个不可以。"),
    ("廣東話係粵語", "广东话系粤语"),
    ("學習語言", "学习语言"),
    ("為什麼", "为什么"),
])
def test_traditional_and_simplified_normalize_equal(trad, simp):
    assert normalize(trad) == normalize(simp)


def test_digits_and_han_only_options():
    assert normalize("第3課abc") == "第3课abc"
    assert normalize("第3課abc", keep_digits=False) == "第课abc"
    assert normalize("第3課abc", han_only=True) == "第课"


def test_rejects_non_str():
    with pytest.raises(TypeError, match="expects str"):
        normalize(None)  # type: ignore[arg-type]


han = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
mixed = st.text(alphabet=st.one_of(han, st.characters()), max_size=40)


@settings(max_examples=300, deadline=None)
@given(mixed)
def test_idempotent_and_never_raises(text):
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=300, deadline=None)
@given(mixed)
def test_output_has_no_punctuation_or_whitespace(text):
    for ch in normalize(text):
        assert not ch.isspace()
        assert unicodedata.category(ch)[0] not in "PZCS", (ch, unicodedata.category(ch))


@settings(max_examples=200, deadline=None)
@given(mixed)
def test_han_only_keeps_only_han(text):
    assert all(is_han(ch) for ch in normalize(text, han_only=True))


@functools.cache
def _s2t():
    import opencc

    return opencc.OpenCC("s2t")   # loading its dictionaries takes 0.1 s: once, not per example


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=han, max_size=20))
def test_traditional_form_normalizes_like_simplified(text):
    assert normalize(_s2t().convert(text)) == normalize(text)


def test_opencc_variant_pairs_are_merged():
    # t2s keeps these simplified variants but maps their traditional forms to the standard character.
    assert normalize("锺鍾钟") == "钟钟钟"
    assert normalize("馀餘余") == "余余余"
    assert normalize("侭儘尽") == "尽尽尽"
    assert normalize("苧苎") == "苎苎"   # t2s maps 苧 itself, so the pair goes to t2s's own output
