"""Translation scores (dialect speech -> Mandarin text): golden corpus BLEU/chrF values computed by hand,
per-dialect grouping, references from a manifest, and ``speechalign score-translation`` on a fake one."""

from __future__ import annotations

import logging
import math

import pytest

from speechalign.cli import main
from speechalign.data.manifest import iter_cuts, open_cuts
from speechalign.decode.report import Utterance, read_recogs, write_reports
from speechalign.decode.translation import TASK, translation_refs, translation_scores
from tests.conftest import write_tone

REF = "今天天气很好"


def _score(pairs: dict[str, tuple[str, str, str]]):
    """id -> (group, hypothesis, reference) to {group: row}."""
    rows = translation_scores({k: h for k, (_, h, _) in pairs.items()}, {k: r for k, (_, _, r) in pairs.items()},
                              {k: g for k, (g, _, _) in pairs.items()})
    assert rows[-1].group == "overall"
    return {r.group: r for r in rows}


def test_golden_identical_and_empty_hypotheses():
    row = _score({"a": ("A", REF, REF)})["overall"]
    assert (row.bleu, row.chrf, row.sentences) == (pytest.approx(100), pytest.approx(100), 1)
    row = _score({"a": ("A", "", REF)})["overall"]
    assert (row.bleu, row.chrf, row.hyp_len, row.ref_len) == (0, 0, 0, 6)


def test_golden_partial_overlap():
    # Prefix of 4 of 6 characters: every n-gram precision is 1, so BLEU is the brevity penalty exp(1 - 6/4).
    # chrF: precisions 1 for n = 1..4 (n = 5, 6 have no hypothesis n-grams and are left out), recalls
    # 4/6, 3/5, 2/4, 1/3 -> mean 21/40; F2 = 5 * 1 * 21/40 / (4 + 21/40) = 105/181.
    row = _score({"a": ("A", "今天天气", REF)})["overall"]
    assert row.bleu == pytest.approx(100 * math.exp(-0.5)) and row.chrf == pytest.approx(100 * 105 / 181)
    # Last character wrong: precisions 5/6, 4/5, 3/4, 2/3 (product 1/3), no brevity penalty; chrF precision =
    # recall = mean(5/6, 4/5, 3/4, 2/3, 1/2, 0) = 71/120.
    row = _score({"a": ("A", "今天天气很坏", REF)})["overall"]
    assert row.bleu == pytest.approx(100 * 3 ** -0.25) and row.chrf == pytest.approx(100 * 71 / 120)


def test_corpus_level_not_a_mean_of_sentences():
    # n-gram counts are summed: all precisions 1 (the empty hypothesis adds none), lengths 6 vs 8.
    row = _score({"a": ("A", REF, REF), "b": ("A", "", "很好")})["A"]
    assert row.bleu == pytest.approx(100 * math.exp(1 - 8 / 6))        # sentence mean would be 50
    # Fewer than four characters: no 4-grams, so corpus BLEU is 0 although the hypothesis is exact.
    row = _score({"a": ("A", "好好", "好好")})["A"]
    assert row.bleu == 0 and row.chrf == pytest.approx(100)


def test_both_sides_normalized_like_cer():
    row = _score({"a": ("A", "今天 天氣，很好！", "今天天气很好。")})["overall"]
    assert row.bleu == pytest.approx(100) and row.chrf == pytest.approx(100)


def test_per_dialect_rows_and_corpus_overall():
    rows = _score({"a": ("Wu", REF, REF), "b": ("Min", "今天天气", REF)})
    assert list(rows) == ["Min", "Wu", "overall"]
    assert rows["Wu"].bleu == pytest.approx(100) and rows["Min"].bleu == pytest.approx(100 * math.exp(-0.5))
    # Overall pools the n-grams: precisions 1, lengths 10 vs 12 (a mean of the two rows would be 80.33).
    assert rows["overall"].bleu == pytest.approx(100 * math.exp(1 - 12 / 10)) and rows["overall"].sentences == 2


def test_ids_must_match():
    with pytest.raises(ValueError, match="1 reference id\\(s\\) without a hypothesis"):
        translation_scores({}, {"a": REF}, {"a": "A"})
    with pytest.raises(ValueError, match="without a group"):
        translation_scores({"a": REF}, {"a": REF}, {})


# id, dialect, transcript, translation ("" = none)
ROWS = [("m1", "Mandarin", "今天天氣很好", ""), ("m2", "Mandarin", "我們去", "我们去了"),
        ("t1", "Taiwan Mandarin", "這個不行", ""), ("c1", "Cantonese", "我哋今日去街", "我们今天去逛街"),
        ("c2", "Cantonese", "佢唔係好鍾意", ""), ("h1", "Hokkien", "伊轉來矣", "他回来了"), ("w1", "Wu", "儂好", "")]
TRANSLATION = {"m1": "今天天气很好", "m2": "我们去了", "t1": "这个不行", "c1": "我们今天去逛街", "h1": "他回来了"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from data_prep.custom import prepare_custom

    root = tmp_path_factory.mktemp("translation")
    lines = ["id\taudio\ttext\tdialect\ttranslation"]
    for k, (uid, dialect, text, translation) in enumerate(ROWS):
        write_tone(root / "corpus" / f"{uid}.wav", 0.2, freq=300 + 40 * k)
        lines.append(f"{uid}\t{uid}.wav\t{text}\t{dialect}\t{translation}")
    (root / "corpus" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepare_custom(root / "corpus", root / "manifests", corpus="fake")
    return root / "manifests" / "fake_cuts_test.jsonl.gz"


def test_references_from_manifest(manifest):
    refs, groups, skipped = translation_refs(open_cuts(manifest))
    assert refs == {"m1": "今天天气很好", "m2": "我们去了", "t1": "这个不行", "c1": "我们今天去逛街", "h1": "他回来了"}
    assert refs["m1"] == next(c for c in iter_cuts(manifest) if c.id == "m1").supervisions[0].text
    assert groups == {"m1": "Mandarin", "m2": "Mandarin", "t1": "Taiwan Mandarin", "c1": "Cantonese", "h1": "Hokkien"}
    assert skipped == {"c2": "Cantonese", "w1": "Wu"}


def test_recogs_round_trip(tmp_path):
    write_reports(tmp_path, "fake_test", "ctc_greedy+lm", [Utterance("b", "Wu", "儂好", ""), Utterance("a", "Wu", "", "")])
    rec = read_recogs(tmp_path / "recogs-fake_test-ctc_greedy+lm.txt")
    assert (rec.set_name, rec.mode) == ("fake_test", "ctc_greedy+lm") and rec.header.startswith("set=fake_test ")
    assert rec.utts == [Utterance("a", "Wu", "", ""), Utterance("b", "Wu", "侬好", "")]
    (tmp_path / "bad.txt").write_text("id\ttext\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a recogs file"):
        read_recogs(tmp_path / "bad.txt")


def test_cli_on_a_fake_manifest(manifest, tmp_path, capsys, caplog):
    # decode's recogs: reference column = transcript; hypotheses = translations, exact except c1 (empty);
    # the skipped c2 has a hypothesis too, which is not scored.
    hyps = {**TRANSLATION, "c1": "", "c2": "他不太喜欢"}
    write_reports(tmp_path / "dec", "fake_test", "attention_beam",
                  [Utterance(uid, d, text, hyps.get(uid, "")) for uid, d, text, _ in ROWS])
    assert main(["score-translation", "--recogs", str(tmp_path / "dec/recogs-fake_test-attention_beam.txt"),
                 "--cuts", str(manifest)]) == 0
    # Overall: every n-gram precision 1 (n-grams 18/14/10/6, all matched), 18 tokens vs 25 -> BP exp(1 - 25/18).
    overall = 100 * math.exp(1 - 25 / 18)
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith(f"fake_test-attention_beam: BLEU {overall:.2f} chrF ")
    assert "over 5 sentences" in line

    tsv = (tmp_path / "dec/bleu-fake_test-attention_beam.tsv").read_text(encoding="utf-8").splitlines()
    head = [ln for ln in tsv if ln.startswith("#")]
    assert head[0] == f"# set=fake_test mode=attention_beam: {TASK}"
    assert "dialect speech -> Mandarin text (translation targets; not ASR-only)" in head[0]
    assert "NFKC + OpenCC t2s" in head[1] and "reference and hypothesis" in head[1]
    assert "tok:zh" in head[2] and "nc:6|nw:0" in head[3] and "skipped 2 cut(s)" in head[4]
    table = [ln.split("\t") for ln in tsv if not ln.startswith("#")]
    assert table[0] == ["dialect", "BLEU", "chrF", "sentences", "hyp_tokens", "ref_tokens", "skipped"]
    rows = {r[0]: r[1:] for r in table[1:]}
    assert list(rows) == ["Cantonese", "Hokkien", "Mandarin", "Taiwan Mandarin", "Wu", "overall"]
    assert rows["Cantonese"] == ["0.00", "0.00", "1", "0", "7", "1"]
    assert rows["Mandarin"] == ["100.00", "100.00", "2", "10", "10", "0"]
    assert rows["Wu"] == ["n/a", "n/a", "0", "0", "0", "1"]
    assert rows["overall"][0] == f"{overall:.2f}" and rows["overall"][2:] == ["5", "18", "25", "2"]

    md = (tmp_path / "dec/bleu-fake_test-attention_beam.md").read_text(encoding="utf-8")
    assert TASK in md and "tok:zh" in md and "| Wu | n/a |" in md
    assert "- `c2` (Cantonese)" in md and "- `w1` (Wu)" in md
    assert not list((tmp_path / "dec").glob(".*.tmp"))

    # Another system's id<TAB>text output; an id not in the manifest is an error naming it.
    (tmp_path / "hyp.txt").write_text("".join(f"{k}\t{v}\n" for k, v in TRANSLATION.items()), encoding="utf-8")
    assert main(["score-translation", "--hyp", str(tmp_path / "hyp.txt"), "--cuts", str(manifest),
                 "--out-dir", str(tmp_path / "ext")]) == 0
    assert "external-score: BLEU 100.00 chrF 100.00 over 5 sentences" in capsys.readouterr().out
    (tmp_path / "hyp.txt").write_text("zz\t他\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="speechalign"):
        assert main(["score-translation", "--hyp", str(tmp_path / "hyp.txt"), "--cuts", str(manifest)]) == 1
    assert "1 id(s) not in" in caplog.text and "zz" in caplog.text
