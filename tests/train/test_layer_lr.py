"""optim.layer_lr_decay: each encoder layer's peak learning rate, in the optimizer the trainer builds."""

import pytest

from speechalign.config import ConfigError, load_config
from speechalign.train.trainer import Trainer
from tests.conftest import tiny_train_overrides


def test_layer_wise_rates_reach_the_optimizer(tone_corpus, tmp_path):
    cfg = load_config(None, tiny_train_overrides(tone_corpus) + [
        "optim.lr=1e-3", "optim.encoder_lr=1e-4", "optim.layer_lr_decay=0.5", "optim.warmup_steps=0"])
    trainer = Trainer(cfg, tmp_path / "exp")
    lrs = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert lrs["encoder.layer2"] == pytest.approx(1e-4) and lrs["encoder.layer1"] == pytest.approx(5e-5)
    assert lrs["encoder.rest"] == pytest.approx(2.5e-5) and lrs["head"] == pytest.approx(1e-3)
    encoder = {id(p) for p in trainer.model.encoder.parameters()}
    grouped = [id(p) for g in trainer.optimizer.param_groups if g["name"].startswith("encoder") for p in g["params"]]
    assert sorted(grouped) == sorted(encoder)   # every encoder parameter, once
    with pytest.raises(ConfigError, match="optim.layer_lr_decay: expected a factor in"):
        load_config(None, ["optim.layer_lr_decay=0"])
