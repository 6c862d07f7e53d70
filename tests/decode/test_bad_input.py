"""decode, embed and transcribe on unreadable audio: one line naming the file and the reason, or with
--skip-bad a counted skip; never a library traceback, never a silent empty transcript."""

import numpy as np
import pytest
import soundfile as sf
import yaml

from speechalign.cli import main
from speechalign.config import load_config
from speechalign.data.manifest import load_cuts
from speechalign.train.trainer import train
from tests.conftest import tiny_train_overrides


@pytest.fixture(scope="module")
def exp(tone_corpus, tmp_path_factory):
    exp = tmp_path_factory.mktemp("exp")
    train(load_config(None, tiny_train_overrides(tone_corpus) + ["train.max_steps=2", "data.num_workers=0"]), exp)
    return exp


@pytest.fixture(scope="module")
def broken(tone_corpus, tmp_path_factory):
    """The dev manifest with one missing file and one file holding a NaN sample (8 cuts in all)."""
    root = tmp_path_factory.mktemp("broken")
    cuts = list(load_cuts(tone_corpus["dev"]))
    cuts[0].recording.sources[0].source = str(root / "gone.wav")
    audio, sr = sf.read(cuts[1].recording.sources[0].source, dtype="float32")
    audio[10] = np.nan
    sf.write(root / "nan.wav", audio, sr, subtype="FLOAT")
    cuts[1].recording.sources[0].source = str(root / "nan.wav")
    from lhotse import CutSet

    path = root / "tones_cuts_broken.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path, cuts[0].id, cuts[1].id


def _error_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def test_decode_names_the_file_or_skips_and_counts(exp, broken, caplog):
    path, missing, nan = broken
    assert main(["decode", "--exp-dir", str(exp), "--cuts", str(path)]) == 1
    (line,) = _error_lines(caplog)
    assert "\n" not in line and "gone.wav: audio file not found" in line and missing in line and "--skip-bad" in line
    assert main(["decode", "--exp-dir", str(exp), "--cuts", str(path), "--skip-bad"]) == 0
    md = (exp / "decode" / "latest" / "cer-tones_broken-ctc_greedy.md").read_text(encoding="utf-8")
    assert "skipped 2 unreadable" in md and "gone.wav" in md
    recogs = (exp / "decode" / "latest" / "recogs-tones_broken-ctc_greedy.txt").read_text(encoding="utf-8")
    ids = [line.split("\t")[0] for line in recogs.splitlines() if line and not line.startswith("#")][1:]
    assert len(ids) == 6 and missing not in ids and nan not in ids


def test_embed_skips_bad_utterances_only_when_asked(exp, broken, tmp_path, caplog):
    path, missing, nan = broken
    assert main(["embed", "--exp-dir", str(exp), "--cuts", str(path), "--out", str(tmp_path / "e1")]) == 1
    assert "gone.wav: audio file not found" in _error_lines(caplog)[0]
    assert main(["embed", "--exp-dir", str(exp), "--cuts", str(path), "--out", str(tmp_path / "e2"),
                 "--skip-bad", "--shard-size", "3"]) == 0
    meta = (tmp_path / "e2" / "meta.tsv").read_text(encoding="utf-8")
    info = yaml.safe_load((tmp_path / "e2" / "info.yaml").read_text(encoding="utf-8"))
    assert info["num_utterances"] == 6 and missing not in meta and nan not in meta and len(info["skipped"]) == 2
    from speechalign.retrieval.embed import EmbeddingStore

    store = EmbeddingStore.open(tmp_path / "e2")
    assert store.pooled(1).shape[0] == len(store.meta) == 6


@pytest.mark.parametrize("content, reason", [("nan", "NaN or inf"), ("short", "shorter than the encoder's minimum"),
                                             ("garbage", "cannot read audio")])
def test_transcribe_bad_files(exp, tmp_path, caplog, capsys, content, reason):
    bad = tmp_path / f"{content}.wav"
    if content == "garbage":
        bad.write_bytes(b"not audio")
    else:
        audio = np.full(16000 if content == "nan" else 200, 0.1, dtype=np.float32)
        audio[5] = np.nan if content == "nan" else audio[5]
        sf.write(bad, audio, 16000, subtype="FLOAT")
    good = tmp_path / "good.wav"
    sf.write(good, 0.1 * np.sin(np.arange(16000) / 10).astype(np.float32), 16000)
    assert main(["transcribe", str(good), str(bad), "--exp-dir", str(exp)]) == 1
    (line,) = _error_lines(caplog)
    assert str(bad) in line and reason in line
    capsys.readouterr()
    assert main(["transcribe", str(good), str(bad), "--exp-dir", str(exp), "--skip-bad"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"{good}\t")
