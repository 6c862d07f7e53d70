"""Runs that cannot clobber each other (issue 32): the experiment lock, refusals of a second run, signals,
a full disk while a checkpoint is written, averaging across runs, and the soak test's miniature."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from speechalign.cli import main
from speechalign.config import load_config
from speechalign.train import checkpoint as ckpt
from speechalign.train.checkpoint import latest_valid, list_checkpoints, read_metrics, write_average
from speechalign.train.rundir import LOCK_NAME, STALE_AFTER_S, ExperimentBusy, ExperimentLock, RunMismatch
from speechalign.train.trainer import train
from tests.conftest import tiny_train_overrides

ROOT = Path(__file__).resolve().parents[2]
# Runs compared bit for bit pin their threads (see test_trainer.PINNED).
PINNED = ["train.num_threads=2", "data.num_workers=0"]


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _errors(caplog, argv: list[str], code: int = 1) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(argv) == code
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


@pytest.fixture(scope="module")
def run(tone_corpus, tmp_path_factory):
    """One finished 24-step run, never modified (tests copy it)."""
    overrides = tiny_train_overrides(tone_corpus) + PINNED
    exp = tmp_path_factory.mktemp("run") / "exp"
    train(load_config(None, overrides), exp)
    return overrides, exp


@pytest.fixture(scope="module", autouse=True)
def _empty_config(tmp_path_factory):
    """The CLI's --config: an empty recipe, so the overrides alone make the config, as in :func:`run`."""
    global _EMPTY
    _EMPTY = tmp_path_factory.mktemp("cfg") / "empty.yaml"
    _EMPTY.write_text("{}\n", encoding="utf-8")


_EMPTY: Path


def _copy(exp: Path, dest: Path) -> Path:
    shutil.copytree(exp, dest)
    return dest


# ---------------------------------------------------------------- the lock
def _lock_of(exp: Path, pid: int, **fields) -> Path:
    from speechalign.train.rundir import _boot_id, _proc_start

    exp.mkdir(parents=True, exist_ok=True)
    owner = {"host": socket.gethostname(), "pid": pid, "started": "2026-01-01 00:00:00", "boot_id": _boot_id(),
             "proc_start": _proc_start(pid), **fields}
    (exp / LOCK_NAME).write_text(yaml.safe_dump(owner), encoding="utf-8")
    return exp / LOCK_NAME


def test_a_live_owner_is_refused_a_dead_one_taken_over(tmp_path, caplog):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        _lock_of(tmp_path / "live", sleeper.pid)
        with pytest.raises(ExperimentBusy, match=rf"live: in use by another training \(pid {sleeper.pid} on host "):
            ExperimentLock(tmp_path / "live").acquire()
        # The same PID after a reboot, or reused by another process, is not the owner.
        for name, fields in (("rebooted", {"boot_id": "another-boot"}), ("reused", {"proc_start": "1"})):
            ExperimentLock(_lock_of(tmp_path / name, sleeper.pid, **fields).parent).acquire().release()
    finally:
        sleeper.kill()
        sleeper.wait()
    _lock_of(tmp_path / "dead", sleeper.pid)
    with caplog.at_level(logging.WARNING):
        lock = ExperimentLock(tmp_path / "dead").acquire()
    assert f"taking over the lock of a run that is gone (pid {sleeper.pid} on host" in caplog.text
    assert yaml.safe_load(lock.path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock.path.exists()


def test_another_hosts_lock_is_stale_only_without_heartbeat(tmp_path):
    path = _lock_of(tmp_path / "far", 1, host="elsewhere")
    with pytest.raises(ExperimentBusy, match="pid 1 on host elsewhere"):
        ExperimentLock(path.parent).acquire()
    old = time.time() - STALE_AFTER_S - 1
    os.utime(path, (old, old))
    ExperimentLock(path.parent).acquire().release()


# ---------------------------------------------------------------- a second run into the same directory
def test_rerun_without_resume_is_refused_and_overwrite_moves_the_old_run_aside(run, tmp_path, caplog):
    overrides, ref = run
    exp = _copy(ref, tmp_path / "exp")
    before = {p: p.stat().st_mtime_ns for p in exp.rglob("*")}
    argv = ["train", "--config", str(_EMPTY), "--exp-dir", str(exp),
            *_sets(overrides + ["train.max_steps=4"])]
    msg = _errors(caplog, argv)
    assert msg == (f"{exp} already holds the checkpoints of a run (step-4 ... step-24); add --resume to continue "
                   f"it, or --overwrite to move it aside to {exp}.old-<timestamp>")
    assert {p: p.stat().st_mtime_ns for p in exp.rglob("*")} == before
    assert main(argv + ["--overwrite"]) == 0
    (old,) = tmp_path.glob("exp.old-*")
    assert [d.name for d in list_checkpoints(old / "checkpoints")][-1] == "step-24"
    assert [d.name for d in list_checkpoints(exp / "checkpoints")] == ["step-4"]
    assert not (exp / LOCK_NAME).exists() and not (old / LOCK_NAME).exists()


def test_resume_refuses_a_changed_config_and_accepts_a_new_budget(run, tmp_path, caplog):
    overrides, ref = run
    exp = _copy(ref, tmp_path / "exp")
    argv = ["train", "--config", str(_EMPTY), "--exp-dir", str(exp), "--resume"]
    msg = _errors(caplog, argv + _sets(overrides + ["optim.lr=1e-3", "model.ctc_weight=0.3", "train.max_steps=30"]))
    assert msg.startswith(f"--resume: the config differs from {exp / 'config.yaml'} in model.ctc_weight (0.5 -> 0.3), "
                          "optim.lr (0.002 -> 0.001); only the step budget and logging may change")
    assert main(argv + _sets(overrides + ["train.max_steps=26", "train.log_every=1", "train.num_threads=1"])) == 0
    saved = load_config(exp / "config.yaml").train
    assert (saved.max_steps, saved.num_threads) == (26, 1)
    assert read_metrics(exp / "checkpoints" / "step-26")["run_id"] == read_metrics(ref / "checkpoints" / "step-4")["run_id"]


# ---------------------------------------------------------------- averaging
def test_average_refuses_checkpoints_of_two_runs(run, tmp_path, caplog):
    _, ref = run
    exp = _copy(ref, tmp_path / "exp")
    other = exp / "checkpoints" / "step-28"
    shutil.copytree(exp / "checkpoints" / "step-24", other)
    metrics = read_metrics(other)
    mine, metrics["run_id"] = metrics["run_id"], "20260101-000000-abcdef"
    (other / "metrics.yaml").write_text(yaml.safe_dump(metrics), encoding="utf-8")
    assert all(read_metrics(d)["run_id"] == mine for d in list_checkpoints(ref / "checkpoints"))
    msg = _errors(caplog, ["average", "--exp-dir", str(exp), "--last", "3"])
    assert msg == (f"average: the checkpoints come from 2 different runs (step-20, step-24 from run {mine}; step-28 "
                   "from run 20260101-000000-abcdef); average checkpoints of one run")
    shutil.rmtree(other)
    assert write_average(exp, last=3).is_file()


# ---------------------------------------------------------------- a full disk
def test_full_disk_during_a_checkpoint_names_the_file_and_leaves_the_previous_one(tone_corpus, tmp_path, caplog,
                                                                                  monkeypatch):
    exp = tmp_path / "exp"
    argv = ["train", "--config", str(_EMPTY), "--exp-dir", str(exp),
            *_sets(tiny_train_overrides(tone_corpus) + ["train.max_steps=12", "data.num_workers=0"])]
    real_save, saves = torch.save, []

    def disk_fills_at_second_checkpoint(obj, path, *a, **k):
        saves.append(path)
        if len(saves) < 2:
            return real_save(obj, path, *a, **k)
        Path(path).write_bytes(b"\0" * 100)        # what made it to disk before the space ran out
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt.torch, "save", disk_fills_at_second_checkpoint)
    msg = _errors(caplog, argv)
    assert msg == (f"checkpoint step-8 not written: {exp}/checkpoints/.step-8.tmp/state.pt: No space left on device; "
                   "step-4 is still the newest checkpoint (free space, then train --resume)")
    assert sorted(p.name for p in (exp / "checkpoints").iterdir()) == ["step-4"]
    assert latest_valid(exp / "checkpoints")[0].name == "step-4"
    assert not (exp / LOCK_NAME).exists()
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    with caplog.at_level(logging.INFO):
        assert main(argv + ["--resume"]) == 0
    assert "resumed from" in caplog.text and (exp / "checkpoints" / "step-12").is_dir()


def test_torch_s_full_disk_error_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    assert ckpt._write_failure(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
                               tmp_path) == "No space left on device (0 kB free)"


# ---------------------------------------------------------------- signals, and the soak's miniature
def test_sigterm_checkpoints_the_current_step_and_resume_is_bit_identical(run, tmp_path, caplog):
    """Also: a second training is refused while the first lives, and the log of a recipe's first run
    (--resume, no checkpoint yet) holds no warning, no third-party loader chatter, and no FAISS import."""
    overrides, ref = run
    exp = tmp_path / "exp"
    cmd = [sys.executable, "-X", "importtime", "-m", "speechalign.cli", "train", "--config",
           str(_EMPTY), "--exp-dir", str(exp), *_sets(overrides)]
    with (tmp_path / "log").open("wb") as log:   # not a pipe: -X importtime alone would fill one
        proc = subprocess.Popen(cmd + ["--resume"], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 120
    while not (exp / LOCK_NAME).is_file():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    msg = _errors(caplog, cmd[5:])
    assert msg.startswith(f"{exp}: in use by another training (pid {proc.pid} on host {socket.gethostname()}, started ")
    while not (exp / "checkpoints" / "step-8").is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before it could be stopped"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    log = (tmp_path / "log").read_text(encoding="utf-8")
    assert proc.returncode == 128 + signal.SIGTERM
    step = max(int(d.name.split("-")[1]) for d in list_checkpoints(exp / "checkpoints"))
    assert 8 < step < 24, log
    assert f"training stopped by SIGTERM at step {step}; continue from {exp}/checkpoints/step-{step} with --resume" in log
    before = log.split(" WARNING speechalign.train: SIGTERM received")[0]
    assert " WARNING " not in before and "faiss" not in before and "overrided" not in before, before
    assert not (exp / LOCK_NAME).exists()
    assert subprocess.run(cmd[:1] + cmd[3:] + ["--resume"], capture_output=True).returncode == 0
    assert (exp / "checkpoints/step-24/model.safetensors").read_bytes() == \
        (ref / "checkpoints/step-24/model.safetensors").read_bytes()


def test_soak_miniature_kill_9_twice_then_identical_weights(run, tmp_path):
    overrides, ref = run
    out = subprocess.run([sys.executable, str(ROOT / "tools/soak_resume.py"), "--out", str(tmp_path / "soak"),
                          "--kills", "2", "--seed", "3", "--reference", str(ref), "--",
                          "--config", str(_EMPTY), *_sets(overrides)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("kill points (seed 3): steps ") and len([x for x in lines if x.startswith("kill ")]) == 3
    assert lines[-1].endswith(": identical")
