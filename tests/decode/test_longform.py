"""Long-form transcription: espeak-ng sentences joined with silences (known boundaries) through Silero VAD, on a
tiny random-init Whisper (30-s windows, packed), a trimmed Whisper, a conformer and a wav2vec2; the outputs
parsed back (SRT by ``srt``, WebVTT by ``webvtt``); refusals for unreadable audio and for no speech."""

import html
import io
import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr

from speechalign.cli import main
from speechalign.data.dataset import collate_audio
from speechalign.data.packing import join_audio
from speechalign.decode.engines import make_engine
from speechalign.decode.longform import LongForm, VadSettings, speech_spans
from speechalign.decode.outputs import clock
from speechalign.decode.run import Reader, read_audio_16k, transcribe
from speechalign.models.experiment import load_experiment
from tests.models.test_export import make_experiment

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
SENTENCES = ["今天天气很好", "我们一起去市场买菜", "这本书很有意思", "请你明天早一点来"]
GAPS = [0.6, 1.4, 0.9]


def espeak(text: str) -> np.ndarray:
    """One sentence, 16 kHz, with espeak-ng's own leading and trailing silence cut (so its bounds are known)."""
    wav = subprocess.run(["espeak-ng", "-v", "cmn", "-s", "170", "--stdout", text], capture_output=True,
                         check=True).stdout
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    audio = soxr.resample(audio, sr, 16000).astype(np.float32)
    loud = np.nonzero(np.abs(audio) > 0.02 * np.abs(audio).max())[0]
    return audio[loud[0] : loud[-1] + 1]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """(path, true (start, end) seconds of each sentence): 1 s of silence, the sentences with GAPS, 1 s."""
    parts, bounds, t = [np.zeros(16000, np.float32)], [], 1.0
    for k, s in enumerate(SENTENCES):
        a = espeak(s)
        bounds.append((t, t + len(a) / 16000))
        parts.append(a)
        t += len(a) / 16000
        gap = GAPS[k] if k < len(GAPS) else 1.0
        parts.append(np.zeros(round(gap * 16000), np.float32))
        t += gap
    path = tmp_path_factory.mktemp("long") / "joined.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path, bounds


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    root = tmp_path_factory.mktemp("longform_exps")
    return {name: make_experiment(root / name, name) for name in ("whisper-pad30", "whisper", "conformer", "wav2vec2")}


@needs_espeak
@pytest.mark.parametrize("name", ["whisper-pad30", "whisper", "conformer", "wav2vec2"])
def test_segments_follow_the_sentences_in_every_format(name, experiments, recording, tmp_path):
    import srt
    import webvtt

    path, bounds = recording
    out = tmp_path / "out"
    text = transcribe(experiments[name], [path], long_form="on", output_dir=out,
                      formats=["txt", "tsv", "srt", "vtt", "json"], progress=False)[0]
    doc = json.loads((out / "joined.json").read_text(encoding="utf-8"))
    segments = doc["segments"]
    assert len(segments) == len(SENTENCES)
    for seg, (start, end) in zip(segments, bounds):
        assert abs(seg["start"] - start) <= 0.3 and abs(seg["end"] - end) <= 0.3, (seg, start, end)
    assert doc["text"] == text == "".join(s["text"] for s in segments)
    spoken = [s for s in segments if s["text"]]
    cues = list(srt.parse((out / "joined.srt").read_text(encoding="utf-8")))
    assert [c.content for c in cues] == [s["text"] for s in spoken]
    assert [round(c.start.total_seconds(), 3) for c in cues] == [s["start"] for s in spoken]
    vtt = webvtt.read(str(out / "joined.vtt"))
    assert [html.unescape(c.text) for c in vtt] == [s["text"] for s in spoken]
    assert [(c.start, c.end) for c in vtt] == [(clock(s["start"], "."), clock(s["end"], ".")) for s in spoken]
    rows = (out / "joined.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "start\tend\ttext" and len(rows) == len(SENTENCES) + 1
    assert (out / "joined.txt").read_text(encoding="utf-8").splitlines() == [s["text"] for s in spoken]


def watched(exp):
    """(engine, the same engine recording the (rows, longest input) of every call, the calls, model, tokenizer)."""
    _, tokenizer, model = load_experiment(exp)
    engine = make_engine("torch", exp, "latest", model, tokenizer, "ctc_greedy", 1)
    calls = []

    def recorded(wav, lens, *args):
        calls.append((len(wav), int(lens.max())))
        return engine(wav, lens, *args)

    return engine, recorded, calls, model, tokenizer


@needs_espeak
def test_packed_windows_split_their_text_and_lose_nothing(experiments, recording):
    """All four sentences fit one 30-s window: long-form text is that window's decode, cut at the segments."""
    path, _ = recording
    engine, counted, calls, model, tokenizer = watched(experiments["whisper-pad30"])
    longform = LongForm(counted, model, tokenizer, VadSettings(), gap=0.3)
    audio = read_audio_16k(path)
    segments = longform(audio, "joined", progress=False)
    assert [rows for rows, _ in calls] == [1] and longform.pack
    found = speech_spans(audio, VadSettings(), "joined")
    window, lens = collate_audio([join_audio([audio[s:e] for s, e in found], 0.3)])
    assert "".join(s.text for s in segments) == engine(window, lens).texts[0]
    # without packing each segment is its own 30-s window, read alone
    alone = LongForm(engine, model, tokenizer, VadSettings(), pack=False)(audio, "joined", progress=False)
    assert [s.text for s in alone] == [engine(*collate_audio([audio[s:e]])).texts[0] for s, e in found]


@needs_espeak
def test_a_ctc_encoder_reads_a_long_recording_in_bounded_chunks(experiments, recording):
    """A conformer reads each VAD segment (at most --vad-max-segment s) on its own: its input never grows."""
    path, _ = recording
    _, recorded, calls, model, tokenizer = watched(experiments["conformer"])
    audio = np.tile(read_audio_16k(path), 4)   # about 40 s
    segs = LongForm(recorded, model, tokenizer, VadSettings(max_segment_s=4.0))(audio, "x", progress=False)
    assert len(segs) >= 4 * len(SENTENCES) and max(longest for _, longest in calls) <= 4 * 16000


def test_no_speech_and_unreadable_audio_are_refused_by_name(experiments, tmp_path, caplog):
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, 0.001 * np.random.default_rng(0).standard_normal(16000 * 40).astype(np.float32), 16000)
    with pytest.raises(ValueError, match=r"quiet\.wav: the VAD found no speech"):
        transcribe(experiments["conformer"], [quiet], progress=False)
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    assert main(["transcribe", str(broken), "--exp-dir", str(experiments["conformer"])]) != 0
    assert "broken.wav: cannot read audio" in caplog.text
    with pytest.raises(ValueError, match="--output-format needs --output-dir"):
        transcribe(experiments["conformer"], [quiet], formats=["srt"])


def test_a_short_file_is_read_whole_and_written_as_one_segment(experiments, tmp_path):
    clip = tmp_path / "clip.wav"
    t = np.arange(16000) / 16000
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    out = tmp_path / "o"
    text = transcribe(experiments["whisper"], [clip], output_dir=out, formats=["json"])[0]
    doc = json.loads((out / "clip.json").read_text(encoding="utf-8"))
    assert doc["segments"] == [{"start": 0.0, "end": 1.0, "text": text}]
    assert doc["segmentation"].startswith("whole file")


def test_packed_decode_reads_the_set_in_windows_and_reports_every_cut(experiments, tone_corpus):
    """decode --pack: the dev cuts fill one 30-s window; its text, split back, is every cut's hypothesis."""
    from speechalign.data.manifest import load_cuts
    from speechalign.decode.report import read_recogs
    from speechalign.decode.run import decode

    exp = experiments["whisper-pad30"]
    decode(exp, [tone_corpus["dev"]], mode="ctc_greedy", pack=True)
    recogs = read_recogs(exp / "decode/latest/recogs-tones_dev-ctc_greedy+packed.txt")
    cuts = load_cuts(tone_corpus["dev"])
    assert sorted(u.id for u in recogs.utts) == sorted(c.id for c in cuts)
    assert "packed evaluation" in (exp / "decode/latest/cer-tones_dev-ctc_greedy+packed.md").read_text(encoding="utf-8")
    # the packing itself: a batch's utterances in one window, its text cut back without losing a character
    _, tokenizer, model = load_experiment(exp)
    engine = make_engine("torch", exp, "latest", model, tokenizer, "ctc_greedy", 1)
    reader = Reader(engine, model, tokenizer, pack=True, gap=0.3)
    audio = [c.load_audio()[0] for c in cuts]
    wav, lens = collate_audio(audio)
    texts = reader(wav, lens, [c.id for c in cuts], ["A"] * len(audio))
    window, wlens = collate_audio([join_audio(audio, 0.3)])
    assert "".join(texts) == engine(window, wlens).texts[0] and sum(map(bool, texts)) > 1


@needs_espeak
def test_the_vad_reads_blocks_and_joins_a_segment_a_block_edge_cut(recording, monkeypatch):
    import speechalign.decode.longform as longform

    path, bounds = recording
    audio = read_audio_16k(path)
    whole_file = speech_spans(audio, VadSettings(), "joined")
    middle = (bounds[1][0] + bounds[1][1]) / 2   # a block edge inside the second sentence
    monkeypatch.setattr(longform, "VAD_BLOCK", round(middle * 16000))
    blocked = speech_spans(audio, VadSettings(), "joined")
    assert len(blocked) == len(whole_file) == len(SENTENCES)
    assert all(abs(a - b) <= 0.15 * 16000 for x, y in zip(blocked, whole_file) for a, b in zip(x, y))


@needs_espeak
def test_decode_reads_a_manifest_of_long_recordings_without_supervisions(experiments, recording, tmp_path):
    """A cut longer than Whisper's 30-s window, with no supervision, is read long-form and its text reported."""
    from lhotse import CutSet, Recording

    from speechalign.decode.report import read_recogs
    from speechalign.decode.run import decode

    path, _ = recording
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(read_audio_16k(path), 4), 16000)   # about 40 s
    cuts = tmp_path / "rec_cuts_test.jsonl.gz"
    CutSet.from_manifests(recordings=[Recording.from_file(long)]).to_file(cuts)
    exp = experiments["whisper-pad30"]
    decode(exp, [cuts], mode="ctc_greedy")
    recogs = read_recogs(exp / "decode/latest/recogs-rec_test-ctc_greedy.txt")
    assert len(recogs.utts) == 1 and recogs.utts[0].hyp
    assert "read long-form" in recogs.header
