"""decode, embed and transcribe on unreadable audio: one line naming the file and the reason, or with
--skip-bad a counted skip; never a library traceback, never a silent empty transcript. decode and score
on empty reference texts: skipped, counted and named, never scored. An error line never lands on the
end of a progress bar."""

import logging
import re

import numpy as np
import pytest
import soundfile as sf
import yaml
from lhotse import CutSet

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


@pytest.fixture(scope="module")
def no_text(tone_corpus, tmp_path_factory):
    """The dev manifest with two cuts whose reference text is empty (8 cuts in all)."""
    cuts = list(load_cuts(tone_corpus["dev"]))
    for cut in cuts[:2]:
        cut.supervisions[0].text = ""
    path = tmp_path_factory.mktemp("no_text") / "tones_cuts_notext.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path, sorted(c.id for c in cuts[:2])


def test_decode_skips_counts_and_names_empty_references(exp, no_text, caplog):
    path, empty = no_text
    with caplog.at_level(logging.INFO, logger="speechalign"):
        assert main(["decode", "--exp-dir", str(exp), "--cuts", str(path)]) == 0
    skipped = f"skipped 2 utterance(s) with an empty reference (not scored): {empty[0]}, {empty[1]}"
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert f"tones_notext ctc_greedy: {skipped}" in logged
    assert any(m.startswith("tones_notext ctc_greedy: CER ") and " over 6 utterances " in m for m in logged)
    out = exp / "decode" / "latest"
    md = (out / "cer-tones_notext-ctc_greedy.md").read_text(encoding="utf-8")
    assert skipped in md and f"Not scored, empty reference (2): `{empty[0]}` " in md
    tsv = (out / "cer-tones_notext-ctc_greedy.tsv").read_text(encoding="utf-8").splitlines()
    assert tsv[0].endswith(skipped) and tsv[-1].split("\t")[0] == "overall" and tsv[-1].split("\t")[-1] == "6"


def test_score_skips_counts_and_names_empty_references(tmp_path, capsys, caplog):
    (tmp_path / "ref").write_text("a\t我們去\nb\t\nc\t。\n", encoding="utf-8")   # c is empty once normalized
    (tmp_path / "hyp").write_text("a\t我们去\nb\t啊啊啊\nc\t啊\n", encoding="utf-8")
    assert main(["score", "--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"),
                 "--out-dir", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "| overall | 0.00 | 3 | 3 | 0 | 0 | 0 | 1 |"
    skipped = "skipped 2 utterance(s) with an empty reference (not scored): b, c"
    assert f"external score: {skipped}" in [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    md = (tmp_path / "out" / "cer-external-score.md").read_text(encoding="utf-8")
    assert skipped in md and "Not scored, empty reference (2): `b` (all), `c` (all)." in md


def test_error_line_is_not_glued_to_a_progress_bar(exp, broken, tmp_path, capfd, monkeypatch):
    # The CLI's own console logging, as a user sees it (pytest's capture handlers out of the way).
    monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.setattr(logging.root, "level", logging.root.level)
    path, missing, _ = broken
    capfd.readouterr()
    assert main(["embed", "--exp-dir", str(exp), "--cuts", str(path), "--out", str(tmp_path / "e")]) == 1
    lines = capfd.readouterr().err.split("\n")
    assert any(re.match(r"\r?embed: 0utt \[", ln) for ln in lines)   # the bar was drawn ...
    errors = [ln for ln in lines if "ERROR" in ln]
    assert len(errors) == 1 and re.match(r"\d\d:\d\d:\d\d ERROR speechalign: embed: .*gone\.wav: audio file not found",
                                         errors[0]), errors   # ... and the error starts a line of its own
