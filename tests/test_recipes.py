"""Every recipe YAML loads into the typed config and its model runs forward/backward (random init)."""

from pathlib import Path

import pytest
import torch

from speechalign.config import load_config
from speechalign.train.dry_run import dry_run

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))


def test_required_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"tiny", "synth_conformer_ctc", "synth_whisper_base_ctc", "multidialect_whisper_small",
            "wav2vec2_ctc"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_dry_run(recipe):
    cfg = load_config(recipe)
    parts = dry_run(cfg)
    assert parts["loss"] > 0 and all(v == v for v in parts.values())
    if cfg.model.ctc_weight < 1.0:
        assert "att" in parts
    if cfg.model.guard.kind != "none":
        assert parts[cfg.model.guard.kind] >= 0
    if cfg.model.align.kind != "none":
        assert parts["align"] > 0


def test_a_dry_run_is_reproducible_and_leaves_the_global_rng_alone():
    cfg = load_config(RECIPES[0].parent / "tiny.yaml")
    state = torch.random.get_rng_state()
    assert dry_run(cfg) == dry_run(cfg)
    assert torch.equal(torch.random.get_rng_state(), state)
