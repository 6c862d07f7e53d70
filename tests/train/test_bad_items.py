"""Training through unreadable items: dropped, counted, reported; too many stop the run clearly."""

import gzip
import json
import math

import numpy as np
import pytest
import soundfile as sf
import yaml

from speechalign.config import load_config
from speechalign.train.trainer import train
from tests.conftest import make_tone_corpus, tiny_train_overrides


@pytest.fixture(scope="module")
def five_percent_bad(tmp_path_factory):
    """60 training cuts; 3 (5 %) broken three ways: missing file, truncated file, wrong declared duration."""
    root = tmp_path_factory.mktemp("bad")
    manifests = make_tone_corpus(root, n_train=60, n_dev=4)
    with gzip.open(manifests["train"], "rt", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    (root / "train0.wav").unlink()
    audio, sr = sf.read(root / "train1.wav", dtype="float32")
    sf.write(root / "train1.wav", audio[: len(audio) // 3], sr)
    rec = lines[2]["recording"]
    rec["duration"], rec["num_samples"] = rec["duration"] + 1.0, rec["num_samples"] + sr
    lines[2]["duration"] += 1.0
    with gzip.open(manifests["train"], "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
    return manifests, [x["id"] for x in lines[:3]]


def _overrides(manifests, *extra):
    return tiny_train_overrides(manifests) + ["train.max_epochs=1", "train.max_steps=100", "train.save_every=1",
                                              "train.valid_every=100", "data.num_workers=1", *extra]


def test_training_finishes_and_reports_the_bad_items(five_percent_bad, tmp_path, caplog):
    manifests, bad_ids = five_percent_bad
    last = train(load_config(None, _overrides(manifests)), tmp_path / "exp")
    metrics = yaml.safe_load((last / "metrics.yaml").read_text(encoding="utf-8"))
    assert metrics["train_bad_items"] == 3
    assert all(math.isfinite(metrics[k]) for k in ("train_loss", "train_ctc"))
    first = " ".join(metrics["train_bad_first"])
    assert all(i in first for i in bad_ids)
    assert "train0.wav: audio file not found" in first and "train1.wav: audio is" in first
    assert "dropped 3 unreadable training item(s)" in caplog.text


def test_more_bad_items_than_allowed_stop_with_a_clear_error(five_percent_bad, tmp_path):
    manifests, _ = five_percent_bad
    cfg = load_config(None, _overrides(manifests, "data.max_bad_fraction=0.03"))
    with pytest.raises(RuntimeError, match=r"unreadable items in epoch 0, more than data.max_bad_fraction=0.03 of 60"):
        train(cfg, tmp_path / "exp")
