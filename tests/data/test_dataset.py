"""Reading batches: unreadable items reported (not raised), streamed eval batches, duplicate ids,
precomputed features and Shar round trips."""

import gzip
import json
import os
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet

from speechalign.data.audio import quiet_id3
from speechalign.data.dataset import SpeechDataset, read_item, windowed_batches
from speechalign.data.features import FrontendConfig, compute_features
from speechalign.data.manifest import DuplicateIds, ManifestError, load_cuts, load_mono, open_cuts
from speechalign.data.shar import export_shar, open_shar
from speechalign.models.frontend import LogFbank, WhisperLogMel
from tests.conftest import make_tone_corpus, write_tone
from tests.fake_corpora import tag_mp3_with_bad_comment


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("tones"), n_train=8, n_dev=2)


def _audio_path(cut) -> str:
    return cut.recording.sources[0].source


def test_bad_items_are_reported_with_file_and_reason_and_good_ones_kept(tones, tmp_path):
    cuts = list(load_cuts(tones["train"]))
    missing, truncated, longer, nan, short = cuts[:5]
    (tmp_path / "gone.wav").unlink(missing_ok=True)
    missing.recording.sources[0].source = str(tmp_path / "gone.wav")
    audio, sr = sf.read(_audio_path(truncated), dtype="float32")
    sf.write(tmp_path / "cut_short.wav", audio[: len(audio) // 2], sr)
    truncated.recording.sources[0].source = str(tmp_path / "cut_short.wav")
    sf.write(tmp_path / "longer.wav", np.concatenate([audio, audio]), sr)   # declared duration is half
    longer.recording.sources[0].source = str(tmp_path / "longer.wav")
    audio, sr = sf.read(_audio_path(nan), dtype="float32")
    sf.write(tmp_path / "nan.wav", np.where(np.arange(len(audio)) == 100, np.nan, audio).astype(np.float32), sr,
             subtype="FLOAT")
    nan.recording.sources[0].source = str(tmp_path / "nan.wav")
    batch = SpeechDataset(min_samples=short.recording.num_samples + 1)[CutSet.from_cuts(cuts[:5])]
    reasons = {b.cut_id: b for b in batch.bad}
    assert set(reasons) == {missing.id, truncated.id, longer.id, nan.id, short.id} and batch.ids == []
    assert "not found" in reasons[missing.id].reason and reasons[missing.id].path.endswith("gone.wav")
    d = truncated.duration
    assert f"audio is {d / 2:.2f} s, the manifest declares {d:.2f} s" in reasons[truncated.id].reason
    d = longer.duration
    assert f"audio is {2 * d:.2f} s, the manifest declares {d:.2f} s" in reasons[longer.id].reason
    assert "NaN" in reasons[nan.id].reason
    assert "shorter than the encoder's minimum" in reasons[short.id].reason
    fresh = list(load_cuts(tones["train"]))
    mixed = SpeechDataset()[CutSet.from_cuts(fresh[5:] + [missing])]
    assert sorted(mixed.ids) == sorted(c.id for c in fresh[5:]) and [b.cut_id for b in mixed.bad] == [missing.id]
    assert mixed.seconds == pytest.approx(sum(c.duration for c in fresh[5:])) and len(mixed.wav) == 3


def test_windowed_batches_cover_every_cut_once_within_the_budget(tones):
    cuts = list(load_cuts(tones["train"]))
    batches = list(windowed_batches(iter(cuts), max_duration=2.0, window=5))
    ids = [c.id for b in batches for c in b]
    assert sorted(ids) == sorted(c.id for c in cuts) and len(ids) == len(set(ids))
    assert all(sum(c.duration for c in b) <= 2.0 or len(b) == 1 for b in batches)
    first_window = [c for b in batches for c in b][:5]
    assert [c.duration for c in first_window] == sorted((c.duration for c in cuts[:5]), reverse=True)
    assert [len(b) for b in windowed_batches(cuts, None, max_cuts=3)] == [3, 3, 2]


def test_open_cuts_is_lazy_and_names_the_bad_line(tones, tmp_path):
    lazy = open_cuts(tones["train"], tones["dev"])
    assert lazy.is_lazy and len(list(lazy)) == 10
    bad = tmp_path / "bad.jsonl"
    with gzip.open(tones["dev"], "rt") as f:
        bad.write_text(f.readline() + "{not json\n", encoding="utf-8")
    stream = open_cuts(bad)
    with pytest.raises(ManifestError, match=r"bad.jsonl:2: not a valid cut"):
        list(stream)
    with pytest.raises(ManifestError, match="manifest not found"):
        open_cuts(tmp_path / "absent.jsonl.gz")


def test_duplicate_ids_found_in_a_streaming_pass():
    ids = [f"utt{i}" for i in range(1000)]
    dups = DuplicateIds()
    for i in ids:
        dups.add(i)
    assert dups.repeated_hashes() == set()
    for i in ("utt7", "utt500", "utt7"):
        dups.add(i)

    class Cut:
        def __init__(self, id):
            self.id = id

    assert dups.find([Cut(i) for i in ids + ["utt7", "utt500", "utt7"]]) == ["utt7", "utt500"]


@pytest.mark.parametrize("kind", ["fbank", "whisper"])
def test_precomputed_features_equal_the_encoder_front_end(tones, tmp_path, kind):
    out = compute_features(tones["train"], tmp_path, FrontendConfig(kind, 80))
    cuts = load_cuts(out)
    stored = SpeechDataset(frontend=FrontendConfig(kind, 80), precomputed=True)[cuts]
    in_loader = SpeechDataset(frontend=FrontendConfig(kind, 80))[cuts]
    audio = SpeechDataset()[cuts]
    feats, lens = (LogFbank(80) if kind == "fbank" else WhisperLogMel(80))(audio.wav, audio.wav_lens)
    if kind == "whisper":
        feats = WhisperLogMel.zero_padding(feats, lens).transpose(1, 2)
    assert stored.ids == audio.ids == in_loader.ids and stored.wav_lens.tolist() == lens.tolist()
    torch.testing.assert_close(in_loader.wav, feats, atol=1e-3, rtol=0)   # float32 STFT of another length
    # lilcom stores log features with an absolute error of at most 2^-6
    assert float((stored.wav - feats).abs().max()) <= 2 ** -6 + 1e-6


def test_shar_round_trip_keeps_cuts_and_audio(tones, tmp_path):
    shar = export_shar([tones["train"]], tmp_path / "shar", shard_size=3)
    assert len(sorted(shar.glob("recording.*.tar"))) == 3
    original = {c.id: c for c in load_cuts(tones["train"])}
    streamed = list(open_shar(shar))
    assert [c.id for c in streamed] == list(original)
    for cut in streamed:
        np.testing.assert_array_equal(cut.load_audio(), original[cut.id].load_audio())
    assert [c.id for c in open_shar(shar, metadata_only=True)] == list(original)
    with pytest.raises(FileExistsError):
        export_shar([tones["train"]], shar)
    with pytest.raises(ManifestError, match="not a Shar directory"):
        open_shar(tmp_path)


@pytest.mark.parametrize("device, cores, gpus, expected", [("cpu", 2, 0, 1), ("cpu", 1, 0, 0), ("cuda", 32, 8, 3),
                                                           ("cuda", 96, 4, 8), ("cuda", 2, 1, 1)])
def test_default_workers_per_device(monkeypatch, device, cores, gpus, expected):
    from speechalign.data import dataset

    monkeypatch.setattr(dataset.os, "sched_getaffinity", lambda _: set(range(cores)))
    monkeypatch.setattr(dataset.torch.cuda, "device_count", lambda: gpus)
    assert dataset.default_num_workers(device) == expected


def test_mp3_id3_chatter_stays_out_of_stderr_and_other_output_stays_in(tmp_path, capfd):
    from lhotse import Recording

    from data_prep.common import PrepReport, check_audio
    from speechalign.decode.run import read_audio_16k

    mp3 = tag_mp3_with_bad_comment(write_tone(tmp_path / "tagged.mp3", 1.0, subtype="MPEG_LAYER_III"))
    capfd.readouterr()
    sf.info(str(mp3))   # the decoder library itself prints to file descriptor 2 ...
    assert "id3.c:process_comment" in capfd.readouterr().err
    cut = check_audio(mp3, PrepReport("x")).to_cut()
    audio = read_item(cut)   # ... but neither data_prep nor training/decoding/embedding/transcribe let it through
    assert len(audio) == cut.num_samples and len(load_mono(cut)) == len(read_audio_16k(mp3)) == cut.num_samples
    assert capfd.readouterr().err == ""
    with quiet_id3(mp3):   # anything else written to stderr meanwhile is kept, in order
        Recording.from_file(mp3)
        print("a Python warning", file=sys.stderr)
        os.write(2, b"a C library's real error\n")
    assert capfd.readouterr().err == "a Python warning\na C library's real error\n"
    with pytest.raises(ValueError, match="kept"), quiet_id3(mp3):
        raise ValueError("a Python error is kept")
