"""The goo-gi recipe tests' shared material: fake goo-gi / lan-lai / tw-hokkien / foochow-idioms / kasu100
trees and a tiny imported Whisper (faster-whisper looks Whisper's tokens up, so it has Whisper's vocab)."""

from __future__ import annotations

import re
from pathlib import Path

from speechalign.models.ct2_import import import_whisper
from tests import fake_corpora

ROOT = Path(__file__).resolve().parents[2]
# The experiment egs/goo-gi/run.sh trains by default: named after its default config (real_X.yaml -> X).
DEFAULT_EXP = re.search(r"^config=\$repo_root/recipes/real_(\S+)\.yaml$",
                        (ROOT / "egs/goo-gi/run.sh").read_text(encoding="utf-8"), re.M).group(1)


def goo_gi_material(root: Path) -> dict[str, Path]:
    from tests.tiny_whisper import convert_to_ct2, make_tiny_whisper

    (root / "tiny").mkdir(parents=True)
    hf = make_tiny_whisper(root / "tiny", whisper_vocab=True)
    whisper = import_whisper(convert_to_ct2(hf, root / "ct2"), root / "whisper", keep_ct2=True)
    return {"goo-gi": fake_corpora.goo_gi_tree(root / "goo-gi"), "lan-lai": fake_corpora.lan_lai_tree(root / "lan-lai"),
            "tw-hokkien": fake_corpora.hokkien_tree(root / "tw"), "whisper": whisper,
            "foochow-idioms": fake_corpora.foochow_idioms_tree(root / "foochow"),
            "kasu100": fake_corpora.kasu100_tree(root / "kasu100")}


def recipe_args(corpora: dict[str, Path], out: Path) -> list:
    """The full recipe on the fake trees: 3 train sentence ids, 1 dev, 2 test."""
    return ["--goo-gi", corpora["goo-gi"], "--lan-lai", corpora["lan-lai"], "--tw-hokkien", corpora["tw-hokkien"],
            "--foochow-idioms", corpora["foochow-idioms"], "--kasu100", corpora["kasu100"],
            "--whisper-dir", corpora["whisper"], "--out", out, "--train-ids", "001-003", "--dev-ids", "004",
            "--test-ids", "005-006", "--dry-run"]


def table_rows(md_path: Path) -> set[str]:
    """The first cell of every body row of a markdown table."""
    return {line.split(" | ")[0].lstrip("| ") for line in md_path.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith("| system")}
