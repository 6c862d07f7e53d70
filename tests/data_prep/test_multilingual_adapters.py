"""Common Voice and FLEURS adapters on fake trees in each corpus's real layout."""

import pytest

from data_prep.commonvoice import prepare_commonvoice
from data_prep.common import CorpusLayoutError
from data_prep.fleurs import prepare_fleurs
from speechalign.cli import main
from speechalign.data.manifest import cut_meta, load_cuts
from tests.fake_corpora import cv_tree, fleurs_tree


def test_commonvoice_languages_labels_and_skips(tmp_path):
    out = prepare_commonvoice(cv_tree(tmp_path / "cv"), tmp_path / "m")
    assert {lang: len(s["train"]) for lang, s in out.items()} == {"zh-CN": 2, "zh-HK": 1, "zh-TW": 1}
    hk = {c.id: c for c in load_cuts(tmp_path / "m/commonvoice-zh-HK_cuts_train.jsonl.gz")}
    cut = hk["common_voice_b1"]
    assert cut_meta(cut)["dialect"] == "Cantonese" and cut.supervisions[0].text == "我哋今日去街"
    assert cut.supervisions[0].speaker == "spk-b1" and cut.sampling_rate == 16000
    assert cut.duration == pytest.approx(1.2, abs=0.08)
    tw = next(iter(load_cuts(tmp_path / "m/commonvoice-zh-TW_cuts_train.jsonl.gz")))
    assert cut_meta(tw)["dialect"] == "Taiwan Mandarin" and tw.supervisions[0].text == "这个不行"
    assert cut_meta(next(iter(out["zh-CN"]["train"])))["dialect"] == "Mandarin"
    report = (tmp_path / "m/commonvoice-zh-HK_prep_report.txt").read_text(encoding="utf-8")
    assert "empty-text" in report and "missing from clips/" in report


def test_commonvoice_wrong_layout(tmp_path):
    (tmp_path / "cv" / "zh-CN").mkdir(parents=True)
    with pytest.raises(CorpusLayoutError, match="clips/\\*.mp3"):
        prepare_commonvoice(tmp_path / "cv", tmp_path / "m", languages=["zh-CN"])


def test_fleurs_prompt_ids_and_labels(tmp_path):
    root = fleurs_tree(tmp_path / "fleurs")
    assert main(["prepare", "fleurs", "--corpus-dir", str(root), "--output-dir", str(tmp_path / "m")]) == 0
    yue = load_cuts(tmp_path / "m/fleurs-yue_hant_hk_cuts_test.jsonl.gz")
    cmn = load_cuts(tmp_path / "m/fleurs-cmn_hans_cn_cuts_test.jsonl.gz")
    assert [cut_meta(c)["sentence_id"] for c in yue] == ["1001", "1001"]
    assert {cut_meta(c)["dialect"] for c in yue} == {"Cantonese"} and {cut_meta(c)["dialect"] for c in cmn} == {"Mandarin"}
    assert sorted(c.supervisions[0].text for c in cmn) == ["今天下雨了", "我喜欢猫"]
    assert next(iter(yue)).supervisions[0].text == "今日落雨"
    assert "empty-text" in (tmp_path / "m/fleurs-yue_hant_hk_prep_report.txt").read_text(encoding="utf-8")
    with pytest.raises(CorpusLayoutError, match="metadata/<lang>"):
        prepare_fleurs(tmp_path / "m", tmp_path / "x")
