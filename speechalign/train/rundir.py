"""One owner per experiment directory, and no silent mixing of two runs in it.

``train`` holds ``<exp>/train.lock`` (host, PID, start time) while it runs. A second run is refused while
the owner lives; a lock whose process is gone (kill -9, a reboot) is taken over with a warning. Checkpoints
carry the run id of the run that wrote them, so averaging can refuse a mixture of two runs.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from speechalign.atomic import write_text
from speechalign.config import ConfigError, ExperimentConfig, load_config, save_config, to_dict
from speechalign.models.experiment import list_checkpoints

log = logging.getLogger("speechalign.train")
LOCK_NAME = "train.lock"
HEARTBEAT_S = 60
# A lock from another host cannot be checked by PID; its owner refreshes the lock's mtime every
# HEARTBEAT_S, so a lock this much older than that belongs to a run that is gone.
STALE_AFTER_S = 10 * HEARTBEAT_S
# What --resume may change: the step budget, how often the run logs, validates and saves, and the machine's
# thread count. Everything else changes the model the checkpoints continue.
RESUMABLE_KEYS = {f"train.{k}" for k in ("max_steps", "max_epochs", "max_minutes", "log_every", "valid_every",
                                          "valid_each_epoch", "valid_at_start", "save_every", "keep_last",
                                          "valid_retrieval_layers", "valid_retrieval_center",
                                          "num_threads")}


class ExperimentBusy(RuntimeError):
    """Another live run owns the experiment directory."""


class RunMismatch(ValueError):
    """The directory holds another run (or another config) than the one asked to continue it."""


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


# ------------------------------------------------------------------ the lock
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc), to tell a reused PID from its owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _me() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "boot_id": _boot_id(), "proc_start": _proc_start(pid)}


def describe(owner: dict) -> str:
    return f"pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}"


def _alive(owner: dict, lock_mtime: float) -> bool:
    if owner.get("host") != socket.gethostname():
        return time.time() - lock_mtime < STALE_AFTER_S
    if owner.get("boot_id") and owner["boot_id"] != _boot_id():
        return False                     # the machine rebooted since
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                             # alive, another user's
    started = _proc_start(pid)
    return not (started and owner.get("proc_start") and started != owner["proc_start"])


def _read_owner(lock: Path) -> tuple[dict, float] | None:
    try:
        owner, mtime = yaml.safe_load(lock.read_text(encoding="utf-8")), lock.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, yaml.YAMLError):
        return {}, 0.0                  # a torn or foreign file: nobody we could wait for
    return (owner if isinstance(owner, dict) else {}), mtime


@contextmanager
def _serialized(exp_dir: Path):
    """Takeovers of a stale lock by two runs on this host happen one after the other (flock on the dir)."""
    fd = os.open(exp_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass                         # a filesystem without flock: the link below still decides
        yield
    finally:
        os.close(fd)


class ExperimentLock:
    """``<exp>/train.lock``, created whole (written beside it, then hard-linked: an existing lock makes the
    link fail) and refreshed by a heartbeat thread until :meth:`release`."""

    def __init__(self, exp_dir: Path):
        self.path = Path(exp_dir) / LOCK_NAME
        self.owner: dict = {}
        self._stop = threading.Event()

    def acquire(self) -> ExperimentLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _serialized(self.path.parent):
            found = _read_owner(self.path)
            if found is not None:
                self._take_over(*found)
            self.owner = _me()
            tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}.tmp")
            write_text(tmp, yaml.safe_dump(self.owner, sort_keys=False))
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                raise self._busy((_read_owner(self.path) or ({}, 0.0))[0]) from None
            finally:
                tmp.unlink(missing_ok=True)
        atexit.register(self.release)
        threading.Thread(target=self._heartbeat, name="speechalign-lock", daemon=True).start()
        return self

    def _take_over(self, owner: dict, mtime: float) -> None:
        if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            log.debug("%s: left by an earlier trainer of this process", self.path)
        elif _alive(owner, mtime):
            raise self._busy(owner)
        else:
            log.warning("%s: taking over the lock of a run that is gone (%s)", self.path, describe(owner))
        self.path.unlink(missing_ok=True)

    def _busy(self, owner: dict) -> ExperimentBusy:
        return ExperimentBusy(f"{self.path.parent}: in use by another training ({describe(owner)}); wait for it "
                              f"to end or use another --exp-dir (lock {self.path})")

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        found = _read_owner(self.path)
        if found is not None and found[0].get("pid") == self.owner.get("pid") \
                and found[0].get("proc_start") == self.owner.get("proc_start"):
            self.path.unlink(missing_ok=True)
        atexit.unregister(self.release)


# ------------------------------------------------------------------ which run the directory holds
def move_aside(exp_dir: Path) -> Path:
    """Everything of the old run into ``<exp>.old-<timestamp>``; the lock stays, so no one slips in."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    exp_dir = exp_dir.resolve()      # "--exp-dir ." has no name to extend
    dest = exp_dir.with_name(f"{exp_dir.name}.old-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = exp_dir.with_name(f"{exp_dir.name}.old-{stamp}-{n}")
    dest.mkdir()
    for item in exp_dir.iterdir():
        if item.name != LOCK_NAME:
            shutil.move(str(item), str(dest / item.name))
    log.info("--overwrite: the previous run of %s moved to %s", exp_dir, dest)
    return dest


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def config_changes(saved: ExperimentConfig, new: ExperimentConfig) -> dict[str, tuple]:
    """Dotted key -> (saved value, new value) for every key that differs."""
    a, b = _flat(to_dict(saved)), _flat(to_dict(new))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resume_config(exp_dir: Path, cfg: ExperimentConfig) -> None:
    """Refuse to continue checkpoints under a config that changes more than the budget and logging;
    record the allowed changes in ``config.yaml``."""
    path = exp_dir / "config.yaml"
    if not path.is_file():
        log.warning("--resume: %s is missing; the checkpoints' config cannot be compared", path)
        return
    try:
        saved = load_config(path)
    except ConfigError as e:
        raise RunMismatch(f"--resume: the saved config cannot be read: {e}") from None
    changes = config_changes(saved, cfg)
    refused = {k: v for k, v in changes.items() if k not in RESUMABLE_KEYS}
    if refused:
        listed = ", ".join(f"{k} ({_short(a)} -> {_short(b)})" for k, (a, b) in refused.items())
        raise RunMismatch(f"--resume: the config differs from {path} in {listed}; only the step budget and "
                          "logging may change when a run continues (start a new --exp-dir for another config)")
    if changes:
        log.info("--resume: %s", ", ".join(f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in changes.items()))
        save_config(cfg, path)


def check_fresh(exp_dir: Path, overwrite: bool) -> None:
    """A new run may not write beside another run's checkpoints."""
    steps = list_checkpoints(exp_dir / "checkpoints")
    if steps and not overwrite:
        held = steps[0].name if len(steps) == 1 else f"{steps[0].name} ... {steps[-1].name}"
        raise RunMismatch(f"{exp_dir} already holds the checkpoints of a run ({held}); add --resume to continue "
                          f"it, or --overwrite to move it aside to {exp_dir}.old-<timestamp>")
    if overwrite and any(p.name != LOCK_NAME for p in exp_dir.iterdir()):
        move_aside(exp_dir)


def claim(exp_dir: Path, cfg: ExperimentConfig, resume: bool, overwrite: bool) -> ExperimentLock:
    """Lock ``exp_dir`` for this run and check that the run may write there."""
    if resume and overwrite:
        raise ValueError("train: --resume continues the run in --exp-dir, --overwrite moves it aside; give one")
    lock = ExperimentLock(exp_dir).acquire()
    try:
        if resume and list_checkpoints(exp_dir / "checkpoints"):
            check_resume_config(exp_dir, cfg)
        elif not resume:
            check_fresh(exp_dir, overwrite)
    except BaseException:
        lock.release()
        raise
    return lock


def require_one_run(step_dirs: list[Path], read_metrics) -> None:
    """``average`` takes checkpoints of one run only (the ``run_id`` of their metrics.yaml)."""
    runs: dict = {}
    for d in step_dirs:
        runs.setdefault(read_metrics(d).get("run_id"), []).append(d.name)
    if len(runs) > 1:
        listed = "; ".join(f"{', '.join(names)} from run {rid or '(none recorded)'}" for rid, names in runs.items())
        raise RunMismatch(f"average: the checkpoints come from {len(runs)} different runs ({listed}); "
                          "average checkpoints of one run")

