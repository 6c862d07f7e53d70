"""Shared test helpers: generated audio files in any layout a fake corpus needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def write_tone(path: str | Path, seconds: float = 1.0, sr: int = 16000, channels: int = 1,
               freq: float = 440.0, subtype: str | None = None) -> Path:
    """Write a short sine tone (creating parent dirs); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.1 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    sf.write(str(path), x, sr, subtype=subtype)
    return path


@pytest.fixture
def tone():
    return write_tone


TONE_CHARS = "甲乙丙丁戊己庚辛壬癸"


def make_tone_corpus(root: str | Path, n_train: int = 40, n_dev: int = 8, seed: int = 0) -> dict[str, Path]:
    """A learnable toy corpus: each character is a 0.25-s tone of its own pitch; two dialect labels.
    Returns the manifest paths per split (prepared with the ``custom`` adapter)."""
    from data_prep.custom import prepare_custom

    root = Path(root)
    rng = np.random.default_rng(seed)
    t = np.arange(4000) / 16000
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["audio\ttext\tdialect\tsentence_id"]
        for i in range(n):
            idx = rng.integers(0, len(TONE_CHARS), rng.integers(2, 5))
            x = np.concatenate([0.3 * np.sin(2 * np.pi * (200 + 80 * j) * t) for j in idx]).astype(np.float32)
            sf.write(root / f"{split}{i}.wav", x, 16000)
            rows.append(f"{split}{i}.wav\t{''.join(TONE_CHARS[j] for j in idx)}\t{'A' if i % 2 else 'B'}\t{i // 2}")
        (root / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    prepare_custom(root, root / "manifests", corpus="tones")
    return {s: root / "manifests" / f"tones_cuts_{s}.jsonl.gz" for s in ("train", "dev")}


def tiny_train_overrides(manifests: dict[str, Path]) -> list[str]:
    return [f"data.train=[{{cuts: [{manifests['train']}]}}]", f"data.dev=[{manifests['dev']}]",
            "data.max_duration=8", "data.num_buckets=2", "model.encoder=conformer", "model.conformer.d_model=32",
            "model.conformer.num_layers=2", "model.conformer.num_heads=2", "model.conformer.ffn_dim=64",
            "model.decoder.num_layers=1", "model.decoder.ffn_dim=64", "model.decoder.num_heads=2",
            "model.ctc_weight=0.5", "optim.lr=2e-3", "optim.warmup_steps=5", "train.max_steps=24",
            "train.valid_every=8", "train.save_every=4", "train.keep_last=0", "train.log_every=4",
            "train.valid_each_epoch=false"]


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


# The files that take minutes, longest first (seconds alone on 2 cores, 2026-12-01). xdist (--dist loadfile,
# --no-loadscope-reorder in pyproject.toml) hands out whole files in collection order, two per worker at
# the start: the long ones then run side by side from the first second, and the short files fill in behind
# them, instead of the longest file starting last and running alone.
LONG_FILES = ("egs/test_goo_gi_recipe.py",    # 355 s
              "egs/test_egs_dry_run.py",      # ~350 s over its tests
              "egs/test_goo_gi_eval_only.py",  # 291 s
              "egs/test_synth_demo.py")       # 140 s


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return next((i for i, name in enumerate(LONG_FILES) if path.endswith(name)), len(LONG_FILES))

    items.sort(key=rank)   # stable: every other file keeps its place
