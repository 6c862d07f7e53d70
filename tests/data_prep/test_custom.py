import gzip

import numpy as np
import pytest
import soundfile as sf

from data_prep.common import CorpusLayoutError
from data_prep.custom import prepare_custom
from speechalign.cli import main
from speechalign.data.manifest import cut_meta, load_cuts, load_mono
from tests.conftest import write_tone


def _tsv(path, rows):
    header = "audio\ttext\tdialect\tspeaker\tsentence_id\n"
    path.write_text(header + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def corpus(tmp_path):
    d = tmp_path / "corpus"
    write_tone(d / "a.wav", 1.0)
    write_tone(d / "b.wav", 2.0, sr=44100, channels=2)           # resampled and downmixed
    write_tone(d / "silent.wav", 0.0)                            # empty audio
    (d / "broken.wav").write_bytes(b"RIFF nonsense")              # unreadable
    sf.write(d / "nan.wav", np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    write_tone(d / "punct.wav", 0.5)
    _tsv(d / "train.tsv", [
        ("a.wav", "我們去了「台灣」！", "Hokkien", "spk1", "001"),
        ("b.wav", "粵語", "Cantonese", "spk2", "002"),
        ("silent.wav", "空", "Mandarin", "spk3", "003"),
        ("broken.wav", "壞", "Mandarin", "spk3", "004"),
        ("nan.wav", "非數", "Mandarin", "spk3", "005"),
        ("punct.wav", "，。！", "Mandarin", "spk3", "006"),
        ("missing.wav", "沒有", "Mandarin", "spk3", "007"),
    ])
    _tsv(d / "test.tsv", [("a.wav", "測試", "Wu", "spk9", "001")])
    return d


def test_prepare_custom_labels_texts_and_skips(corpus, tmp_path):
    out = tmp_path / "out"
    result = prepare_custom(corpus, out)
    assert sorted(result) == ["test", "train"]
    train = load_cuts(out / "custom_cuts_train.jsonl.gz")
    metas = {cut_meta(c)["sentence_id"]: cut_meta(c) for c in train}
    assert sorted(metas) == ["001", "002"]
    assert metas["001"]["text"] == "我们去了台湾" and metas["001"]["dialect"] == "Hokkien"
    assert train[metas["001"]["id"]].supervisions[0].custom["raw_text"] == "我們去了「台灣」！"
    stereo = train[metas["002"]["id"]]
    assert stereo.sampling_rate == 16000 and stereo.duration == pytest.approx(2.0, abs=1e-3)
    audio = load_mono(stereo)
    assert audio.ndim == 1 and len(audio) == pytest.approx(32000, abs=2)
    report = (out / "custom_prep_report.txt").read_text(encoding="utf-8")
    assert "skipped 5" in report
    for name, reason in [("silent.wav", "empty"), ("broken.wav", "unreadable"), ("nan.wav", "nan"),
                         ("missing.wav", "missing"), ("punct", "empty-text")]:
        assert any(name in line and f"\t{reason}:" in line for line in report.splitlines()), name


def test_missing_dir_names_layout(tmp_path):
    with pytest.raises(CorpusLayoutError, match="audio, text, dialect"):
        prepare_custom(tmp_path / "nope", tmp_path / "out")


def test_missing_column_names_file(tmp_path):
    (tmp_path / "train.tsv").write_text("audio\ttext\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.tsv: missing column\(s\) \['dialect'\]"):
        prepare_custom(tmp_path, tmp_path / "out")


def test_manifest_write_is_atomic(corpus, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare_custom(corpus, out)
    before = (out / "custom_cuts_test.jsonl.gz").read_bytes()

    def crash(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("lhotse.CutSet.to_file", crash)
    with pytest.raises(RuntimeError):
        prepare_custom(corpus, out)
    assert (out / "custom_cuts_test.jsonl.gz").read_bytes() == before
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_broken_jsonl_line_names_file_and_line(corpus, tmp_path):
    out = tmp_path / "out"
    prepare_custom(corpus, out)
    path = out / "custom_cuts_train.jsonl.gz"
    lines = gzip.open(path, "rt", encoding="utf-8").read().splitlines()
    bad = tmp_path / "bad_cuts_train.jsonl.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as f:
        f.write(lines[0] + "\n{not json\n")
    assert main(["stats", str(bad)]) == 1
    from speechalign.data.manifest import ManifestError
    with pytest.raises(ManifestError, match=r"bad_cuts_train.jsonl.gz:2"):
        load_cuts(bad)


def test_duplicate_ids_rejected(corpus, tmp_path):
    out = tmp_path / "out"
    prepare_custom(corpus, out)
    path = out / "custom_cuts_test.jsonl.gz"
    from speechalign.data.manifest import ManifestError
    with pytest.raises(ManifestError, match="duplicate cut id"):
        load_cuts(path, path)


def test_cli_prepare_and_stats(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", "custom", "--corpus-dir", str(corpus), "--output-dir", str(out)]) == 0
    assert main(["stats", str(out / "custom_cuts_train.jsonl.gz"), str(out / "custom_cuts_test.jsonl.gz")]) == 0
    table = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in table.splitlines()[2:-1]}
    assert rows[("train", "Hokkien")][0] == "1"
    assert rows[("train", "Cantonese")][:2] == ["1", "0.001"]
    assert rows[("test", "Wu")][0] == "1"
    assert table.splitlines()[-1].split()[1] == "3"
