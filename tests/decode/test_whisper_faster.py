"""decode-whisper --backend faster-whisper: faster-whisper's own transcribe (temperature fallback, thresholds)
on the same CTranslate2 dir, offline, reported like the greedy baseline under its own mode name."""

import numpy as np
import pytest

pytest.importorskip("ctranslate2", reason="pip ctranslate2 is needed for the zero-shot decoder")
faster_whisper = pytest.importorskip("faster_whisper", reason="pip faster-whisper is needed for this backend")

from speechalign.cli import main  # noqa: E402
from speechalign.data.dataset import read_item  # noqa: E402
from speechalign.data.manifest import load_cuts  # noqa: E402
from speechalign.text import normalize  # noqa: E402
from tests.tiny_whisper import convert_to_ct2, make_tiny_whisper  # noqa: E402


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory):
    """Whisper's real id layout (51,865 tokens): CTranslate2, hence faster-whisper, treats it as multilingual,
    so the zh/transcribe prompt and the timestamp rules run as on whisper-base."""
    root = tmp_path_factory.mktemp("whisper")
    return convert_to_ct2(make_tiny_whisper(root, gain=3.0, whisper_vocab=True), root / "ct2")


@pytest.fixture(scope="module")
def two_cuts(tmp_path_factory):
    import soundfile as sf

    from data_prep.custom import prepare_custom

    root = tmp_path_factory.mktemp("two")
    t = np.arange(12000) / 16000
    for i, f in enumerate((300.0, 520.0)):
        sf.write(root / f"u{i}.wav", (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), 16000)
    (root / "test.tsv").write_text("audio\ttext\tdialect\nu0.wav\t甲乙\tA\nu1.wav\t丙丁\tB\n", encoding="utf-8")
    prepare_custom(root, root / "m", corpus="two")
    return root / "m/two_cuts_test.jsonl.gz"


def _recogs(path):
    return {r.split("\t")[0]: r.split("\t")[1:] for r in path.read_text(encoding="utf-8").splitlines()[2:]}


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to fetch a tokenizer or model from the Hub fails the test."""
    import tokenizers

    def refuse(*a, **k):
        raise AssertionError("faster-whisper tried to download")

    monkeypatch.setattr(faster_whisper.transcribe, "download_model", refuse)
    monkeypatch.setattr(tokenizers.Tokenizer, "from_pretrained", refuse)


@pytest.mark.parametrize("beam", [None, 1])   # None: faster-whisper's default, beam 5
def test_faster_whisper_backend_reports_under_its_mode(ct2_dir, two_cuts, tmp_path, offline, beam):
    out = tmp_path / "out"
    args = ["decode-whisper", "--ct2-dir", str(ct2_dir), "--cuts", str(two_cuts), "--out", str(out),
            "--device", "cpu", "--backend", "faster-whisper"] + ([] if beam is None else ["--beam", str(beam)])
    assert main(args) == 0
    mode = f"faster_whisper_beam{beam or 5}"
    for kind in ("recogs", "errs"):
        assert (out / f"{kind}-two_test-{mode}.txt").is_file()
    table = (out / f"cer-two_test-{mode}.tsv").read_text(encoding="utf-8")
    assert f"beam_size={beam or 5}" in table and "temperature fallback" in table and "language=zh" in table
    assert {"A", "B", "overall"} <= {r.split("\t")[0] for r in table.splitlines()[2:]}
    recogs = _recogs(out / f"recogs-two_test-{mode}.txt")
    assert sorted(recogs) == sorted(c.id for c in load_cuts(two_cuts))
    assert not list(out.glob("*whisper_greedy*"))   # the greedy row is another run, under its own name

    if beam is None:
        return
    # the same call made directly, on the project's reader's audio: the reports hold exactly its output
    import ctranslate2

    model = faster_whisper.WhisperModel(str(ct2_dir), device="cpu", compute_type="float32")
    for cut in list(load_cuts(two_cuts))[:1]:
        ctranslate2.set_random_seed(0)   # the temperature fallback samples; the backend seeds each utterance
        segments, info = model.transcribe(read_item(cut), language="zh", task="transcribe", beam_size=beam)
        assert info.language == "zh"
        assert recogs[cut.id][2] == normalize("".join(s.text for s in segments))


def test_default_backend_is_still_ct2_greedy(ct2_dir, two_cuts, tmp_path):
    assert main(["decode-whisper", "--ct2-dir", str(ct2_dir), "--cuts", str(two_cuts), "--out", str(tmp_path),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "recogs-two_test-whisper_greedy.txt").is_file()
    assert "zero-shot CTranslate2 Whisper" in (tmp_path / "cer-two_test-whisper_greedy.tsv").read_text(encoding="utf-8")


def test_max_length_caps_what_each_backend_generates(ct2_dir, two_cuts, tmp_path):
    """--max-length bounds a looping model's output: greedy's capped hypothesis is a prefix of the uncapped one."""
    base = ["decode-whisper", "--ct2-dir", str(ct2_dir), "--cuts", str(two_cuts), "--device", "cpu"]
    assert main(base + ["--out", str(tmp_path / "full")]) == 0
    assert main(base + ["--out", str(tmp_path / "cap"), "--max-length", "4"]) == 0
    full = _recogs(tmp_path / "full" / "recogs-two_test-whisper_greedy.txt")
    capped = _recogs(tmp_path / "cap" / "recogs-two_test-whisper_greedy.txt")
    assert "max_length=4" in (tmp_path / "cap" / "cer-two_test-whisper_greedy.tsv").read_text(encoding="utf-8")
    for cut_id, row in capped.items():
        assert len(row[2]) < len(full[cut_id][2]) and full[cut_id][2].startswith(row[2])
    assert main(base + ["--out", str(tmp_path / "fw"), "--backend", "faster-whisper", "--beam", "1",
                        "--max-length", "4"]) == 0
    assert "max_new_tokens=4" in (tmp_path / "fw" / "cer-two_test-faster_whisper_beam1.tsv").read_text(encoding="utf-8")
