"""AISHELL, KeSpeech and MDCC adapters on fake trees in each corpus's real layout."""

import pytest

from data_prep.aishell import prepare_aishell
from data_prep.common import CorpusError, CorpusLayoutError
from data_prep.kespeech import prepare_kespeech
from data_prep.mdcc import prepare_mdcc
from speechalign.cli import main
from speechalign.data.manifest import cut_meta, load_cuts
from tests.fake_corpora import aishell_tree, kespeech_tree, mdcc_tree


def test_aishell(tmp_path):
    out = prepare_aishell(aishell_tree(tmp_path / "aishell"), tmp_path / "m")
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "dev": 1, "test": 1}
    train = {c.id: c for c in load_cuts(tmp_path / "m/aishell_cuts_train.jsonl.gz")}
    cut = train["BAC009S0002W0122"]
    assert cut.supervisions[0].text == "而对楼市成交抑制作用最大的限购" and cut_meta(cut)["dialect"] == "Mandarin"
    assert cut.supervisions[0].speaker == "S0002" and cut.duration == pytest.approx(1.0)
    resampled = train["BAC009S0002W0123"]
    assert resampled.sampling_rate == 16000 and resampled.load_audio().shape[-1] == pytest.approx(24000, abs=2)
    test = next(iter(load_cuts(tmp_path / "m/aishell_cuts_test.jsonl.gz")))
    assert test.supervisions[0].text == "甚至出现交易几乎停滞的情况"
    report = (tmp_path / "m/aishell_prep_report.txt").read_text(encoding="utf-8")
    assert "empty-text" in report and "dropped-by-lhotse: audio without a transcript line" in report


def test_aishell_layout_and_bad_audio_errors(tmp_path):
    with pytest.raises(CorpusLayoutError, match="aishell_transcript_v0.8.txt"):
        prepare_aishell(tmp_path, tmp_path / "m")
    root = aishell_tree(tmp_path / "bad")
    (root / "data_aishell/wav/test/S0764/BAC009S0764W0121.wav").write_bytes(b"RIFF broken")
    with pytest.raises(CorpusError, match="BAC009S0764W0121.wav"):
        prepare_aishell(root, tmp_path / "m")
    assert main(["prepare", "aishell", "--corpus-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path)]) == 1


def test_kespeech_subdialect_labels(tmp_path):
    out = prepare_kespeech(kespeech_tree(tmp_path / "ks"), tmp_path / "m", ["train_phase1"])
    cuts = {c.id: c for c in load_cuts(tmp_path / "m/kespeech_cuts_train_phase1.jsonl.gz")}
    assert len(out["train_phase1"]) == 3
    assert {k: cut_meta(c)["dialect"] for k, c in cuts.items()} == {
        "1001_a": "Mandarin", "1002_b": "Southwestern", "1004_d": "Jiao-Liao"}
    assert cuts["1001_a"].supervisions[0].text == "今天天气很好"
    assert cuts["1001_a"].supervisions[0].custom["raw_text"] == "今天天氣很好"
    assert cuts["1002_b"].duration == pytest.approx(1.3)
    assert "empty-text" in (tmp_path / "m/kespeech_prep_report.txt").read_text(encoding="utf-8")


def test_kespeech_unknown_subdialect_and_layout(tmp_path):
    root = kespeech_tree(tmp_path / "ks")
    p = root / "Tasks/ASR/train_phase1/utt2subdialect"
    p.write_text(p.read_text().replace("Southwestern", "Martian"))
    with pytest.raises(ValueError, match="unknown subdialect 'Martian'"):
        prepare_kespeech(root, tmp_path / "m", ["train_phase1"])
    with pytest.raises(CorpusLayoutError, match="utt2subdialect"):
        prepare_kespeech(root, tmp_path / "m", ["test"])


def test_mdcc(tmp_path):
    out = prepare_mdcc(mdcc_tree(tmp_path / "mdcc"), tmp_path / "m")
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "valid": 1, "test": 1}
    cuts = {c.id: c for c in load_cuts(tmp_path / "m/mdcc_cuts_train.jsonl.gz")}
    assert cuts["mdcc_train_utt0"].supervisions[0].text == "我哋今日去街" and cut_meta(cuts["mdcc_train_utt0"])["dialect"] == "Cantonese"
    assert cuts["mdcc_train_utt1"].supervisions[0].text == "佢唔系好钟意" and cuts["mdcc_train_utt1"].sampling_rate == 16000
    with pytest.raises(CorpusLayoutError, match="cnt_asr_"):
        prepare_mdcc(tmp_path, tmp_path / "m")
