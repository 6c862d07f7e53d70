"""Common Voice and FLEURS adapters on fake trees in each corpus's real layout."""

import pytest

from data_prep.commonvoice import prepare_commonvoice
from data_prep.common import CorpusLayoutError
from data_prep.fleurs import prepare_fleurs
from speechalign.cli import main
from speechalign.data.manifest import cut_meta, load_cuts
from tests.conftest import write_tone

CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"


def cv_tree(root):
    rows = {"zh-CN": [("a1", "今天天气很好。", 16000), ("a2", "我们去公园", 48000)],
            "zh-HK": [("b1", "我哋今日去街！", 48000), ("b2", "，", 48000)],
            "zh-TW": [("c1", "這個不行", 32000)]}
    for lang, items in rows.items():
        lines = []
        for stem, text, sr in items:
            write_tone(root / lang / "clips" / f"common_voice_{stem}.mp3", 1.2, sr=sr, subtype="MPEG_LAYER_III")
            lines.append(f"spk-{stem}\tcommon_voice_{stem}.mp3\t{text}\t2\t0\t\t\t\t\t{lang}\t\n")
        (root / lang / "train.tsv").write_text(CV_HEADER + "".join(lines), encoding="utf-8")
        (root / lang / "dev.tsv").write_text(CV_HEADER + lines[0] + f"x\tcommon_voice_missing.mp3\t缺\t2\t0\t\t\t\t\t{lang}\t\n",
                                             encoding="utf-8")
        (root / lang / "test.tsv").write_text(CV_HEADER + lines[-1], encoding="utf-8")
    return root


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


def fleurs_tree(root):
    items = {"cmn_hans_cn": [("1001", "今天下雨了。", "今天 下雨 了"), ("1002", "我喜欢猫", "我 喜欢 猫")],
             "yue_hant_hk": [("1001", "今日落雨。", "今日 落雨"), ("1001", "今日落雨。", "今日 落雨"),
                             ("1003", "！", "")]}
    for lang, rows in items.items():
        for split in ("train", "dev", "test"):
            lines = []
            for k, (pid, raw, norm) in enumerate(rows if split == "test" else rows[:1]):
                name = f"{lang[:3]}{split}{k}.wav"
                write_tone(root / lang / split / name, 1.0 + k * 0.5)
                lines.append(f"{pid}\t{name}\t{raw}\t{norm}\tx\t{int((1.0 + k * 0.5) * 16000)}\tFEMALE\n")
            (root / "metadata" / lang).mkdir(parents=True, exist_ok=True)
            (root / "metadata" / lang / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return root


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
