import logging
import shutil

import numpy as np
import pytest
import torch

ctranslate2 = pytest.importorskip("ctranslate2", reason="pip ctranslate2 is needed for the zero-shot decoder")

from speechalign.cli import main  # noqa: E402
from speechalign.data.manifest import load_cuts, load_mono  # noqa: E402
from speechalign.decode.whisper_zero_shot import WhisperText, generate, whisper_features  # noqa: E402
from speechalign.models.frontend import WhisperLogMel  # noqa: E402
from speechalign.text import normalize  # noqa: E402
from tests.conftest import write_tone  # noqa: E402
from tests.tiny_whisper import convert_to_ct2, make_tiny_whisper  # noqa: E402


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("whisper")
    return convert_to_ct2(make_tiny_whisper(root, gain=3.0), root / "ct2")


def _recogs(path):
    """id -> (dialect, reference, hypothesis) from a recogs file (two header lines)."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[2:]]
    return {r[0]: tuple(r[1:]) for r in rows}


def test_features_match_transformers_extractor():
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000 * 7 + 123, 16000 * 2)]
    wav = torch.zeros(2, len(waves[0]))
    for i, w in enumerate(waves):
        wav[i, : len(w)] = torch.from_numpy(w)
    ours = whisper_features(wav, torch.tensor([len(w) for w in waves]), WhisperLogMel(80))
    theirs = WhisperFeatureExtractor(feature_size=80)(waves, sampling_rate=16000, return_tensors="np").input_features
    assert ours.shape == theirs.shape == (2, 80, 3000)
    assert np.abs(ours - theirs).max() < 1e-4


def test_cli_reports_and_matches_direct_generate(ct2_dir, tone_corpus, tmp_path):
    out = tmp_path / "out"
    # 90 s of windows = 3 cuts per batch: 8 cuts give batches of 3, 3, 2 with differently padded audio.
    assert main(["decode-whisper", "--ct2-dir", str(ct2_dir), "--cuts", str(tone_corpus["dev"]), "--out", str(out),
                 "--max-duration", "90", "--device", "cpu"]) == 0
    table = (out / "cer-tones_dev-whisper_greedy.tsv").read_text(encoding="utf-8")
    assert "language=zh, beam=1" in table and {"A", "B"} <= {r.split("\t")[0] for r in table.splitlines()[2:]}
    recogs = _recogs(out / "recogs-tones_dev-whisper_greedy.txt")
    cuts = load_cuts(tone_corpus["dev"])
    assert sorted(recogs) == sorted(c.id for c in cuts) and len(recogs) == 8
    assert len({h for _, _, h in recogs.values()}) > 2  # the fixture's decoder does listen to the audio

    # One utterance at a time, straight through ctranslate2: batching must not change any hypothesis.
    model = ctranslate2.models.Whisper(str(ct2_dir), device="cpu")
    text, mel = WhisperText(ct2_dir / "tokenizer.json", "zh"), WhisperLogMel(80)
    for cut in cuts:
        audio = torch.from_numpy(load_mono(cut))[None]
        feats = whisper_features(audio, torch.tensor([audio.shape[1]]), mel)
        result = model.generate(ctranslate2.StorageView.from_array(feats), [text.prompt], beam_size=1)[0]
        assert recogs[cut.id][2] == normalize(text.decode(result.sequences_ids[0]))
        assert recogs[cut.id][1] == normalize(cut.supervisions[0].text)


def test_beam_search_and_long_cut_skipped(ct2_dir, tmp_path, caplog):
    from data_prep.custom import prepare_custom

    write_tone(tmp_path / "short.wav", 1.5)
    write_tone(tmp_path / "long.wav", 31.0)
    (tmp_path / "test.tsv").write_text("audio\ttext\tdialect\nshort.wav\t甲乙\tA\nlong.wav\t丙丁\tB\n", encoding="utf-8")
    prepare_custom(tmp_path, tmp_path / "m", corpus="toy")
    with caplog.at_level(logging.WARNING):
        assert main(["decode-whisper", "--ct2-dir", str(ct2_dir), "--cuts", str(tmp_path / "m/toy_cuts_test.jsonl.gz"),
                     "--out", str(tmp_path / "out"), "--beam", "3"]) == 0
    assert "skipped 1 cut(s) longer than 30 s" in caplog.text
    recogs = (tmp_path / "out/recogs-toy_test-whisper_beam.txt").read_text(encoding="utf-8")
    assert "beam=3" in recogs and "skipped 1 cut(s) > 30 s" in recogs and len(_recogs(tmp_path / "out/recogs-toy_test-whisper_beam.txt")) == 1


def test_missing_tokenizer_or_language_is_a_clear_error(ct2_dir, tone_corpus, tmp_path, caplog):
    bare = shutil.copytree(ct2_dir, tmp_path / "bare")
    (bare / "tokenizer.json").unlink()
    args = ["decode-whisper", "--ct2-dir", str(bare), "--cuts", str(tone_corpus["dev"]), "--out", str(tmp_path / "o")]
    assert main(args) == 1
    assert f"{bare}: not a CTranslate2 Whisper directory, missing tokenizer.json" in caplog.text
    assert "speechalign fetch-pretrained whisper-base" in caplog.text
    args[2] = str(ct2_dir)
    assert main(args + ["--language", "xx"]) == 1
    assert "no token <|xx|>" in caplog.text
    assert not (tmp_path / "o").exists()


def test_generate_helper_batches_like_single_rows(ct2_dir):
    model = ctranslate2.models.Whisper(str(ct2_dir), device="cpu")
    text = WhisperText(ct2_dir / "tokenizer.json", "zh")
    feats = np.random.default_rng(1).standard_normal((3, 80, 3000)).astype(np.float32)
    batched = generate(model, feats, text, beam=1, max_length=64)
    assert batched == [generate(model, feats[i : i + 1], text, beam=1, max_length=64)[0] for i in range(3)]
    assert text.prompt == [101, 103, 105, 109] and text.decode([5, 101, 17, 100, 109]) == "t5t17"
