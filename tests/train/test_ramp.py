"""model.ctc_encoder_grad_ramp: the encoder's share of the CTC gradient, by training step."""

import pytest
from hypothesis import given, strategies as st

from speechalign.config import ConfigError, load_config
from speechalign.models.asr import ASRModel
from speechalign.train.schedule import ramp
from speechalign.train.trainer import train
from tests.conftest import tiny_train_overrides


def test_ramp_holds_moves_linearly_then_holds():
    assert [ramp(s, 0.05, 0.45, 100, 200) for s in (0, 99, 100, 150, 175, 200, 400)] == pytest.approx(
        [0.05, 0.05, 0.05, 0.25, 0.35, 0.45, 0.45])
    assert ramp(10, 0.05, 1.0, 10, 10) == 1.0       # a step change at 10
    assert ramp(500, 0.05, None, 0, 0) == 0.05      # no ramp configured


@given(st.floats(0, 1), st.floats(0, 1), st.integers(0, 50), st.integers(0, 50), st.integers(0, 120))
def test_ramp_stays_between_its_ends_and_is_monotone(value, to, start, length, step):
    end = start + length
    here, after = ramp(step, value, to, start, end), ramp(step + 1, value, to, start, end)
    assert min(value, to) - 1e-12 <= here <= max(value, to) + 1e-12
    assert (after - here) * (to - value) >= -1e-12


@pytest.mark.parametrize("ramp_yaml", ["{to: 1.5, start: 0, end: 10}", "{to: 0.5, start: 20, end: 10}",
                                       "{to: 0.5, start: -1, end: 10}"])
def test_a_bad_ramp_is_refused_naming_the_key(ramp_yaml):
    with pytest.raises(ConfigError, match="model.ctc_encoder_grad_ramp"):
        load_config(None, [f"model.ctc_encoder_grad_ramp={ramp_yaml}"])


def test_the_trainer_sets_the_scale_of_each_training_step(tone_corpus, tmp_path, monkeypatch):
    cfg = load_config(None, tiny_train_overrides(tone_corpus) + [
        "data.num_workers=0", "train.max_steps=5", "train.valid_every=100", "train.save_every=5",
        "model.ctc_encoder_grad=0", "model.ctc_encoder_grad_ramp={to: 1.0, start: 1, end: 3}"])
    seen, original = [], ASRModel.loss

    def spy(self, *args, **kwargs):
        if self.training:
            seen.append(self.ctc_encoder_grad)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ASRModel, "loss", spy)
    train(cfg, tmp_path / "exp")
    assert seen == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
