"""bench/train_profile.py on a tiny Whisper encoder with a pretrained (Whisper-style, BPE) decoder dir: every
encoder layer is in the table, frozen layers cost forward only, and the totals are positive."""

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.train.conftest import make_whisper_like_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_profile", ROOT / "bench" / "train_profile.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory):
    return make_whisper_like_dir(tmp_path_factory.mktemp("whisper_like"))


def _args(corpus, decoder_dir, out, *extra):
    return ["--config", str(ROOT / "recipes" / "tiny.yaml"), "--cuts", str(corpus["train"]),
            "--set", "model.encoder=whisper", "--set", "model.whisper.d_model=32",
            "--set", "model.whisper.encoder_layers=3", "--set", "model.whisper.encoder_attention_heads=2",
            "--set", "model.whisper.encoder_ffn_dim=64", "--set", f"model.decoder.pretrained={decoder_dir}",
            "--set", "model.decoder.dropout=0.0", "--set", "model.ctc_weight=0.3",
            "--set", "model.freeze.decoder_embedding=true", *extra,
            "--steps", "2", "--warmup", "1", "--max-duration", "4", "--threads", "1", "--out", str(out)]


def test_profile_table_frozen_layers_and_totals(bench, tone_corpus, decoder_dir, tmp_path, capsys):
    out = tmp_path / "profile.md"
    prof = bench.main(_args(tone_corpus, decoder_dir, out, "--set", "model.freeze.frontend=true",
                            "--set", "model.freeze.first_layers=1"))
    text = out.read_text()
    assert text == capsys.readouterr().out
    rows = prof.rows
    # every encoder layer is listed, marked by its parameters' requires_grad
    assert "| encoder layer 0 — frozen |" in text
    assert "| encoder layer 1 — trained |" in text and "| encoder layer 2 — trained |" in text
    assert "| encoder front end: conv1 — frozen |" in text and "| encoder front end: conv2 — frozen |" in text
    assert "| decoder embedding — frozen |" in text and "| decoder layer 0 — trained |" in text
    # a frozen layer with nothing trainable below it costs forward only
    for label in ("encoder front end: conv1", "encoder front end: conv2", "encoder layer 0", "decoder embedding"):
        assert all(f > 0 for f in rows[label].fwd) or label == "decoder embedding", label
        assert all(b == 0 for b in rows[label].bwd), label
    assert rows["encoder layer 0"].trainable == 0 and rows["encoder layer 0"].params > 0
    # the trained ones have a backward, the first of them too (its inputs need no gradient)
    for label in ("encoder layer 1", "encoder layer 2", "CTC head (linear)", "decoder layer 0"):
        assert all(f > 0 for f in rows[label].fwd) and all(b > 0 for b in rows[label].bwd), label
    assert all(b > 0 for b in rows["optimizer.step() (AdamW)"].bwd)
    # totals
    assert len(prof.step_s) == 2 and all(s > 0 for s in prof.step_s)
    assert all(a > 0 for a in prof.audio_s) and all(u > 0 for u in prof.utts)
    parts = sum(sum(r.fwd) + sum(r.bwd) for r in rows.values())
    assert parts == pytest.approx(sum(prof.step_s), rel=1e-6)   # the rows split the step exactly
    summary = text.strip().splitlines()[-1]
    assert summary.startswith("steps/min ") and ", s/step " in summary and ", audio-s per wall-s " in summary
    assert all(float(x.split()[-1]) > 0 for x in summary.split(", "))
    assert "| **total** |" in text


def test_a_frozen_layer_above_a_trained_front_end_has_a_backward(bench, tone_corpus, decoder_dir, tmp_path):
    """Gradients still flow through frozen layer 0 to the trained convolutions below it."""
    prof = bench.main(_args(tone_corpus, decoder_dir, tmp_path / "p.md", "--set", "model.freeze.first_layers=1"))
    assert prof.rows["encoder layer 0"].trainable == 0
    assert all(b > 0 for b in prof.rows["encoder layer 0"].bwd)
    assert all(b > 0 for b in prof.rows["encoder front end: conv1"].bwd)
