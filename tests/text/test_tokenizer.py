import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechalign.text import CharTokenizer, normalize


def test_specials_and_frequency_order():
    tok = CharTokenizer.build(["你好你", "好你"])
    assert tok.tokens[:3] == ["<blank>", "<unk>", "<sos/eos>"]
    assert tok.blank_id == 0 and tok.unk_id == 1 and tok.sos_eos_id == 2
    assert tok.tokens[3:] == ["你", "好"]  # 你 x3 before 好 x2


def test_min_count_and_unknown_counted():
    tok = CharTokenizer.build(["aab", "ac"], min_count=2)
    assert tok.tokens[3:] == ["a"]
    assert tok.encode("abd") == [3, 1, 1]
    assert tok.unk_counts == {"b": 1, "d": 1}


def test_save_load_roundtrip(tmp_path):
    tok = CharTokenizer.build(["粤语广东话", "普通话"])
    tok.save(tmp_path / "tokens.txt")
    loaded = CharTokenizer.load(tmp_path / "tokens.txt")
    assert loaded.tokens == tok.tokens
    assert (tmp_path / "tokens.txt").read_text(encoding="utf-8").splitlines()[0] == "<blank> 0"


def test_load_rejects_bad_file(tmp_path):
    (tmp_path / "t.txt").write_text("<blank> 0\n<unk> 1\n<sos/eos> 5\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"t.txt:3"):
        CharTokenizer.load(tmp_path / "t.txt")


def test_decode_drops_blank_and_sos():
    tok = CharTokenizer.build(["ab"])
    assert tok.decode([0, 3, 2, 1, 4]) == "a<unk>b"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=15), min_size=1, max_size=5))
def test_encode_decode_roundtrip(texts):
    texts = [normalize(t) for t in texts]
    tok = CharTokenizer.build(texts)
    for t in texts:
        assert tok.decode(tok.encode(t)) == t
    assert not tok.unk_counts
