"""AISHELL, KeSpeech and MDCC adapters on fake trees in each corpus's real layout."""

import pytest

from data_prep.aishell import prepare_aishell
from data_prep.common import CorpusError, CorpusLayoutError
from data_prep.kespeech import prepare_kespeech
from data_prep.mdcc import prepare_mdcc
from speechalign.cli import main
from speechalign.data.manifest import cut_meta, load_cuts
from tests.conftest import write_tone


def aishell_tree(root):
    write_tone(root / "data_aishell/wav/train/S0002/BAC009S0002W0122.wav", 1.0)
    write_tone(root / "data_aishell/wav/train/S0002/BAC009S0002W0123.wav", 1.5, sr=8000)
    write_tone(root / "data_aishell/wav/train/S0002/BAC009S0002W0124.wav", 0.5)       # punctuation only
    write_tone(root / "data_aishell/wav/train/S0002/BAC009S0002W0999.wav", 0.5)       # no transcript
    write_tone(root / "data_aishell/wav/dev/S0724/BAC009S0724W0121.wav", 2.0, channels=2)
    write_tone(root / "data_aishell/wav/test/S0764/BAC009S0764W0121.wav", 1.2)
    t = root / "data_aishell/transcript/aishell_transcript_v0.8.txt"
    t.parent.mkdir(parents=True)
    t.write_text("BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购\nBAC009S0002W0123 也 成为 地方 政府 的 眼中 钉\n"
                 "BAC009S0002W0124 ， 。\nBAC009S0724W0121 甚至 出现 交易 几乎 停滞 的 情况\n"
                 "BAC009S0764W0121 甚至 出现 交易 幾乎 停滯 的 情況\n", encoding="utf-8")
    return root


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


def kespeech_tree(root):
    rows = [("1001_a", "Mandarin", "今天天氣很好", "spk1", 1.0), ("1002_b", "Southwestern", "我们去吃火锅", "spk2", 1.3),
            ("1003_c", "Lan-Yin", "<SPOKEN_NOISE>", "spk3", 0.7), ("1004_d", "Jiao-Liao", "海边的风很大", "spk4", 0.9)]
    part = root / "Tasks/ASR/train_phase1"
    part.mkdir(parents=True)
    files = {n: [] for n in ("wav.scp", "text", "utt2subdialect", "utt2spk")}
    for utt, dialect, text, spk, dur in rows:
        write_tone(root / f"Audio/{utt}.wav", dur)
        files["wav.scp"].append(f"{utt} Audio/{utt}.wav")
        files["text"].append(f"{utt} {text}")
        files["utt2subdialect"].append(f"{utt} {dialect}")
        files["utt2spk"].append(f"{utt} {spk}")
    for name, lines in files.items():
        (part / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


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
    root = tmp_path / "mdcc"
    lines = ["audio_path,text_path,gender,duration"]
    for i, (text, sr) in enumerate([("我哋今日去街。", 16000), ("佢唔係好鍾意", 44100)]):
        write_tone(root / f"audio/utt{i}.wav", 1.0 + i, sr=sr)
        (root / "text").mkdir(exist_ok=True)
        (root / f"text/utt{i}.txt").write_text(text, encoding="utf-8")
        lines.append(f"./audio/utt{i}.wav,text/utt{i}.txt,F,{1.0 + i}")
    for part in ("train", "valid", "test"):
        (root / f"cnt_asr_{part}_metadata.csv").write_text("\n".join(lines if part == "train" else lines[:2]) + "\n")
    out = prepare_mdcc(root, tmp_path / "m")
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "valid": 1, "test": 1}
    cuts = {c.id: c for c in load_cuts(tmp_path / "m/mdcc_cuts_train.jsonl.gz")}
    assert cuts["mdcc_utt0"].supervisions[0].text == "我哋今日去街" and cut_meta(cuts["mdcc_utt0"])["dialect"] == "Cantonese"
    assert cuts["mdcc_utt1"].supervisions[0].text == "佢唔系好钟意" and cuts["mdcc_utt1"].sampling_rate == 16000
    with pytest.raises(CorpusLayoutError, match="cnt_asr_"):
        prepare_mdcc(tmp_path, tmp_path / "m")
