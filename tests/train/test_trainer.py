import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from speechalign.config import load_config
from speechalign.train.checkpoint import list_checkpoints, write_average
from speechalign.train.trainer import Trainer, train
from tests.conftest import tiny_train_overrides


def _weights(step_dir: Path) -> dict:
    return load_file(str(step_dir / "model.safetensors"))


def _identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# The kill -9 tests compare this in-process run with a subprocess: both pin their threads, since another
# test in this worker may have changed torch's (a different thread count sums in a different order).
PINNED = ["train.num_threads=2"]


@pytest.fixture(scope="module")
def reference_run(tone_corpus, tmp_path_factory):
    exp = tmp_path_factory.mktemp("ref")
    cfg = load_config(None, tiny_train_overrides(tone_corpus) + ["data.num_workers=0"] + PINNED)
    last = train(cfg, exp)
    return cfg, exp, last


def test_run_writes_experiment_dir(reference_run):
    cfg, exp, last = reference_run
    assert last.name == "step-24"
    assert (exp / "config.yaml").is_file() and (exp / "tokens.txt").is_file()
    assert load_config(exp / "config.yaml") == cfg
    metrics = yaml.safe_load((exp / "checkpoints" / "step-8" / "metrics.yaml").read_text())
    assert metrics["step"] == 8 and metrics["valid_step"] == 8
    assert set(metrics["valid_cer"]) == {"A", "B", "overall"}
    assert "valid_loss" not in yaml.safe_load((exp / "checkpoints" / "step-4" / "metrics.yaml").read_text())
    state = torch.load(last / "state.pt", weights_only=True)
    assert state["step"] == 24
    assert any(p.name.startswith("events.out.tfevents") for p in (exp / "tensorboard").iterdir())


def test_report_says_whether_a_time_cap_stopped_training(reference_run, tone_corpus, tmp_path):
    from speechalign.report import training_extent

    _, exp, _ = reference_run
    extent = training_extent(exp)
    assert extent.startswith(f"Trained 24 steps. Arithmetic: torch {torch.__version__}, "
                             f"{torch.backends.cpu.get_cpu_capability()} kernels")
    assert f"{torch.get_num_threads()} threads" in extent
    cfg = load_config(None, tiny_train_overrides(tone_corpus) + ["data.num_workers=0", "train.max_minutes=1e-6"])
    capped = tmp_path / "capped"
    train(cfg, capped)
    metrics = yaml.safe_load((list_checkpoints(capped / "checkpoints")[-1] / "metrics.yaml").read_text())
    assert metrics["stopped_by"] == "max_minutes" and metrics["step"] == 1
    assert training_extent(capped).startswith("Training stopped at step 1 of 24: the 1e-06-minute cap")


def _kill_at_step_8_then_resume(tmp_path, overrides: list[str]) -> Path:
    exp = tmp_path / "exp"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({}), encoding="utf-8")
    cmd = [sys.executable, "-m", "speechalign.cli", "train", "--config", str(tmp_path / "cfg.yaml"),
           "--exp-dir", str(exp)] + [a for o in overrides for a in ("--set", o)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (exp / "checkpoints" / "step-8").is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [d.name for d in list_checkpoints(exp / "checkpoints")]
    assert "step-24" not in done
    # A truncated newest checkpoint must be skipped with a warning, not crash the resume.
    newest = list_checkpoints(exp / "checkpoints")[-1]
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert subprocess.run(cmd + ["--resume"], capture_output=True).returncode == 0
    return exp


def test_kill_9_then_resume_with_loader_workers_gives_bit_identical_weights(reference_run, tone_corpus, tmp_path):
    """Workers prefetch ahead of the step; the saved sampler state must still be the consumed one.
    The reference ran without workers, so this also shows workers do not change the batches."""
    _, ref_exp, _ = reference_run
    exp = _kill_at_step_8_then_resume(tmp_path, tiny_train_overrides(tone_corpus) + ["data.num_workers=2"] + PINNED)
    assert _identical(_weights(exp / "checkpoints" / "step-24"), _weights(ref_exp / "checkpoints" / "step-24"))


def test_kill_9_then_resume_on_a_shar_corpus_gives_bit_identical_weights(reference_run, tone_corpus, tmp_path):
    from speechalign.data.shar import export_shar

    _, ref_exp, _ = reference_run
    shar = export_shar([tone_corpus["train"]], tmp_path / "shar", shard_size=16)
    overrides = tiny_train_overrides(tone_corpus) + [f"data.train=[{{shar: {shar}}}]", "data.num_workers=2"] + PINNED
    exp = _kill_at_step_8_then_resume(tmp_path, overrides)
    assert _identical(_weights(exp / "checkpoints" / "step-24"), _weights(ref_exp / "checkpoints" / "step-24"))


def test_average_last_and_best(reference_run):
    _, exp, _ = reference_run
    out = write_average(exp, last=2)
    avg = load_file(str(out))
    a, b = _weights(exp / "checkpoints" / "step-20"), _weights(exp / "checkpoints" / "step-24")
    for k in avg:
        if a[k].is_floating_point():
            torch.testing.assert_close(avg[k], (a[k].float() + b[k].float()) / 2)
        else:
            assert torch.equal(avg[k], b[k])
    best = write_average(exp, best=1)
    losses = {d.name: yaml.safe_load((d / "metrics.yaml").read_text()).get("valid_loss")
              for d in list_checkpoints(exp / "checkpoints")}
    winner = min((v, k) for k, v in losses.items() if v is not None)[1]
    assert _identical(load_file(str(best)), _weights(exp / "checkpoints" / winner))


def test_non_finite_loss_skipped_then_aborts(tone_corpus, tmp_path, monkeypatch):
    cfg = load_config(None, tiny_train_overrides(tone_corpus) + ["train.nan_patience=3", "train.max_steps=10"])
    trainer = Trainer(cfg, tmp_path / "nan")
    real_forward = type(trainer.model).forward
    calls = {"n": 0}

    def flaky(self, *a, **k):
        out = real_forward(self, *a, **k)
        calls["n"] += 1
        if calls["n"] in (2,) or calls["n"] >= 5:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(type(trainer.model), "forward", flaky)
    with pytest.raises(RuntimeError, match="3 non-finite losses in a row"):
        trainer.train()
    assert trainer.nan_total == 4 and trainer.step == 3


def test_bad_config_names_key(tmp_path):
    (tmp_path / "bad.yaml").write_text("optim:\n  lr: 1e-3\n  lr_max: 2\n", encoding="utf-8")
    from speechalign.cli import main

    assert main(["train", "--config", str(tmp_path / "bad.yaml"), "--dry-run"]) == 1
    from speechalign.config import ConfigError

    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lr_max'\]; allowed: \['accum_grad'"):
        load_config(tmp_path / "bad.yaml")


def test_front_end_in_loader_or_precomputed_gives_the_same_first_loss(tone_corpus, tmp_path):
    from speechalign.data.features import compute_features, frontend_for

    base = tiny_train_overrides(tone_corpus) + ["train.max_steps=1", "train.save_every=1", "data.spec_augment=false",
                                                "data.num_workers=0"]
    stored = compute_features(tone_corpus["train"], tmp_path / "feats", frontend_for(load_config(None, base)))
    losses = {}
    for mode, extra in (("audio", []), ("loader", []), ("precomputed", [f"data.train=[{{cuts: [{stored}]}}]"])):
        last = train(load_config(None, base + [f"data.features={mode}"] + extra), tmp_path / mode)
        losses[mode] = yaml.safe_load((last / "metrics.yaml").read_text())["train_loss"]
    assert losses["loader"] == pytest.approx(losses["audio"], rel=1e-4)
    assert losses["precomputed"] == pytest.approx(losses["audio"], rel=1e-2)   # lilcom-quantized features
