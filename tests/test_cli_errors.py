"""Bad input ends a command with exit 1 and one log line naming the file and the line, field or key."""

from __future__ import annotations

import gzip
import logging

import pytest
import torch
from safetensors.torch import save_file

from speechalign.cli import main
from speechalign.models.experiment import load_checkpoint_into, valid_checkpoints


def _error(caplog, argv) -> str:
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="speechalign"):
        assert main(argv) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


def test_yaml_syntax_error_names_file_line_and_column(tmp_path, caplog):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder: conformer\n  oops: [1, 2\noptim:\n  lr: 1\n")
    msg = _error(caplog, ["train", "--config", str(bad), "--exp-dir", str(tmp_path / "e")])
    assert msg.startswith(f"{bad}: YAML syntax error at line 4, column 6: ")
    assert "override 'optim.lr=[1': value is not valid YAML (line 1, column 3" in _error(
        caplog, ["train", "--config", "recipes/synth_conformer_ctc.yaml", "--set", "optim.lr=[1",
                 "--exp-dir", str(tmp_path / "e")])


def _write_cuts(path, ids):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i in ids:
            f.write('{"id": "%s", "start": 0, "duration": 1.0, "channel": 0, "supervisions": [], '
                    '"recording": {"id": "%s", "sources": [{"type": "file", "channels": [0], "source": "x.wav"}], '
                    '"sampling_rate": 16000, "num_samples": 16000, "duration": 1.0, "channel_ids": [0]}, '
                    '"type": "MonoCut"}\n' % (i, i))
    return path


def test_empty_manifest_is_an_error_in_every_command(tmp_path, caplog):
    empty = _write_cuts(tmp_path / "empty_cuts_test.jsonl.gz", [])
    expected = f"{empty}: no cuts (empty manifest"
    assert expected in _error(caplog, ["stats", str(empty)])
    assert expected in _error(caplog, ["decode", "--exp-dir", str(tmp_path), "--cuts", str(empty)])
    assert expected in _error(caplog, ["decode-whisper", "--ct2-dir", str(tmp_path), "--cuts", str(empty),
                                       "--out", str(tmp_path / "o")])
    assert f"{expected} given as data.dev)" in _error(
        caplog, ["train", "--config", "recipes/synth_conformer_ctc.yaml", "--exp-dir", str(tmp_path / "e"),
                 "--set", f"data.train=[{{cuts: [{_write_cuts(tmp_path / 'one.jsonl.gz', ['a'])}]}}]",
                 "--set", f"data.dev=[{empty}]"])
    assert "hold no usable cuts" in _error(caplog, ["embed", "--features", "fbank", "--cuts", str(empty),
                                                    "--out", str(tmp_path / "emb")])


def test_stats_names_duplicate_ids_and_both_files(tmp_path, caplog):
    a = _write_cuts(tmp_path / "x_cuts_train.jsonl.gz", ["u1", "u2"])
    b = _write_cuts(tmp_path / "x_cuts_test.jsonl.gz", ["u3", "u2"])
    assert _error(caplog, ["stats", str(a), str(b)]) == \
        f"{b}: duplicate cut id 'u2' at cut #2 (first seen in {a}, cut #2)"


def test_embed_decode_and_retrieve_refuse_duplicate_ids_naming_both_places(tmp_path, caplog):
    one = _write_cuts(tmp_path / "x_cuts_test.jsonl.gz", ["u1", "u2", "u1"])
    assert _error(caplog, ["decode", "--exp-dir", str(tmp_path / "no-exp"), "--cuts", str(one)]) == \
        f"{one}: duplicate cut id 'u1' at cut #3 (first seen in {one}, cut #1)"
    a = _write_cuts(tmp_path / "x_cuts_a.jsonl.gz", ["u1", "u2"])
    b = _write_cuts(tmp_path / "x_cuts_b.jsonl.gz", ["u3", "u2"])
    # One embedding directory for both manifests: an id may not repeat across them either.
    assert _error(caplog, ["embed", "--features", "fbank", "--cuts", str(a), str(b), "--out", str(tmp_path / "emb")]) \
        == f"{b}: duplicate cut id 'u2' at cut #2 (first seen in {a}, cut #2)"
    emb = tmp_path / "emb-dup"   # e.g. written by an older version, or two directories' files merged by hand
    emb.mkdir()
    (emb / "info.yaml").write_text("layers: [0]\npooling: [mean]\nnum_shards: 0\n", encoding="utf-8")
    (emb / "meta.tsv").write_text("id\tdialect\tsite\tsubgroup\tsentence_id\tframes\n"
                                  "u1\tA\t\t\t1\t5\nu2\tB\t\t\t1\t5\nu1\tB\t\t\t2\t5\n", encoding="utf-8")
    expected = f"{emb / 'meta.tsv'}: duplicate cut id 'u1' at line 4 (first seen in {emb / 'meta.tsv'}, line 2)"
    assert _error(caplog, ["retrieve", "--emb-dir", str(emb)]) == expected
    assert _error(caplog, ["retrieve", "--emb-dir", str(emb), "--layer", "all"]) == expected
    # train: across the corpora of data.train
    assert _error(caplog, ["train", "--config", "recipes/synth_conformer_ctc.yaml", "--exp-dir", str(tmp_path / "e"),
                           "--set", f"data.train=[{{cuts: [{a}]}}, {{cuts: [{b}]}}]", "--set", "data.dev=[]"]) \
        == f"{b}: duplicate cut id 'u2' at cut #2 (first seen in {a}, cut #2)"


def test_unreadable_or_mismatched_weights_name_the_file_and_the_valid_checkpoints(tmp_path):
    model = torch.nn.Linear(3, 2)
    for step in (10, 20):
        (tmp_path / "checkpoints" / f"step-{step}").mkdir(parents=True)
    save_file(model.state_dict(), str(tmp_path / "checkpoints" / "step-10" / "model.safetensors"))
    corrupt = tmp_path / "checkpoints" / "step-20" / "model.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    save_file({"weight": torch.zeros(2, 3)}, str(tmp_path / "avg-last2.safetensors"))
    assert valid_checkpoints(tmp_path) == ["step-10", "avg-last2"]
    with pytest.raises(ValueError) as err:
        load_checkpoint_into(model, corrupt, tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"{corrupt}: unreadable weights (") and "\n" not in msg
    assert msg.endswith(f"valid checkpoints of {tmp_path}: ['step-10', 'avg-last2']")
    with pytest.raises(ValueError, match=r"avg-last2.safetensors: does not fit the model of .*config.yaml: "
                                         r"1 missing key\(s\) \(e.g. bias\); valid checkpoints"):
        load_checkpoint_into(model, tmp_path / "avg-last2.safetensors", tmp_path)
    save_file({"weight": torch.zeros(4, 3), "bias": torch.zeros(2)}, str(tmp_path / "wide.safetensors"))
    with pytest.raises(ValueError, match=r"1 shape mismatch\(es\) \(e.g. weight\)"):
        load_checkpoint_into(model, tmp_path / "wide.safetensors", tmp_path)
    load_checkpoint_into(model, tmp_path / "checkpoints" / "step-10" / "model.safetensors", tmp_path)
