import pytest

from speechalign.decode.cer import CerScorer, align
from speechalign.decode.report import Utterance, write_reports
from speechalign.decode.run import score_files


def test_golden_counts_ignore_spaces_punctuation_and_script():
    s = CerScorer()
    c = s.add("我們 去了「台灣」。", "我们去台湾！", "Mandarin")   # 7 ref chars: 我们去了台湾 -> 6 chars
    assert (c.chars, c.hits, c.subs, c.dels, c.ins) == (6, 5, 0, 1, 0)
    c = s.add("廣東話", "广东化啊", "Cantonese")
    assert (c.chars, c.hits, c.subs, c.dels, c.ins) == (3, 2, 1, 0, 1)


def test_micro_average_differs_from_macro():
    s = CerScorer()
    s.add("一二三四五六七八九十", "一二三四五六七八九十", "A")   # 0/10
    s.add("甲", "乙", "A")                                      # 1/1
    s.add("天地", "天", "B")                                    # 1/2
    a, b, overall = s.groups["A"], s.groups["B"], s.overall()
    assert a.cer == pytest.approx(1 / 11)                       # macro over A's utterances would be 0.5
    assert b.cer == pytest.approx(0.5)
    assert overall.cer == pytest.approx(2 / 13)
    assert (overall.chars, overall.utts, overall.errors) == (13, 3, 2)


def test_empty_reference_is_defined_and_never_scored():
    counts, _ = align("", "")
    assert counts.cer == 0.0 and counts.utts == 1
    counts, _ = align("", "啊啊")
    assert counts.ins == 2 and counts.chars == 0 and counts.cer == float("inf")
    s = CerScorer()
    assert s.add("。", "啊", "A", "u1") is None   # empty once normalized: skipped and counted, not an insertion
    s.add("好", "好", "A")
    s.add("", "", "B")
    assert s.groups["A"].cer == 0.0 and s.overall().utts == 1 and "B" not in s.groups
    assert s.skipped == [("u1", "A"), (None, "B")]
    assert s.skipped_note() == "skipped 2 utterance(s) with an empty reference (not scored): u1"


def test_reports_written_and_labelled_cer(tmp_path):
    utts = [Utterance("u1", "Wu", "上海閒話。", "上海闲话"), Utterance("u2", "Wu", "儂好", "侬"),
            Utterance("u3", "Min", "", "")]
    write_reports(tmp_path, "test", "ctc_greedy", utts)
    tsv = (tmp_path / "cer-test-ctc_greedy.tsv").read_text(encoding="utf-8").splitlines()
    assert tsv[0].startswith("# set=test mode=ctc_greedy normalization: NFKC + OpenCC t2s")
    assert tsv[1].split("\t") == ["dialect", "CER%", "chars", "correct", "sub", "del", "ins", "utts"]
    rows = {r.split("\t")[0]: r.split("\t") for r in tsv[2:]}
    assert rows["Wu"][1:] == ["16.67", "6", "5", "0", "1", "0", "2"]
    assert rows["overall"][2] == "6" and rows["overall"][7] == "2" and "Min" not in rows   # u3: no reference
    skipped = "skipped 1 utterance(s) with an empty reference (not scored): u3"
    assert tsv[0].endswith(skipped)
    md = (tmp_path / "cer-test-ctc_greedy.md").read_text(encoding="utf-8")
    assert "CER" in md and "WER" not in md and skipped in md.splitlines()[1]
    assert md.rstrip().endswith("Not scored, empty reference (1): `u3` (Min).")
    errs = (tmp_path / "errs-test-ctc_greedy.txt").read_text(encoding="utf-8")
    assert "ref: 侬 好" in errs and "hyp: 侬 *" in errs and "1\t好" in errs and "\nu3\t" not in errs
    recogs = (tmp_path / "recogs-test-ctc_greedy.txt").read_text(encoding="utf-8")
    assert "u1\tWu\t上海闲话\t上海闲话" in recogs and "u3\tMin\t\t" in recogs   # its hypothesis is still output


def test_score_external_files_with_groups(tmp_path):
    (tmp_path / "ref").write_text("a\t我們去\nb 廣東話\n", encoding="utf-8")
    (tmp_path / "hyp").write_text("a\t我们去\nb\t广东\n", encoding="utf-8")
    (tmp_path / "groups").write_text("a\tMandarin\nb\tCantonese\n", encoding="utf-8")
    scorer = score_files(tmp_path / "ref", tmp_path / "hyp", tmp_path / "groups", tmp_path / "out")
    assert scorer.groups["Mandarin"].cer == 0 and scorer.groups["Cantonese"].dels == 1
    (tmp_path / "hyp2").write_text("zz\tx\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not in"):
        score_files(tmp_path / "ref", tmp_path / "hyp2", None, tmp_path / "out")
