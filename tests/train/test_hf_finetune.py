"""Fine-tuning any transformers speech family with the hybrid CTC/attention loss (``model.encoder: hf``; Whisper
through ``model.encoder: whisper``): two steps, a resume without the source directory, averaging and decoding."""

import shutil

import pytest
import torch

from speechalign.config import load_config
from speechalign.decode.run import decode
from speechalign.models.experiment import load_experiment
from speechalign.train.checkpoint import write_average
from speechalign.train.trainer import train
from tests.conftest import tiny_train_overrides
from tests.hf_models import TINY_MODELS, save_tiny_model, save_tiny_whisper


@pytest.mark.parametrize("name", sorted(TINY_MODELS) + ["whisper"])
def test_two_steps_resume_average_and_decode(name, tone_corpus, tmp_path):
    source = tmp_path / "source"
    if name == "whisper":
        encoder = ["model.encoder=whisper", f"model.whisper.pretrained={save_tiny_whisper(source)}"]
    else:
        encoder = ["model.encoder=hf", f"model.hf.pretrained={save_tiny_model(source, name)}",
                   "model.hf.config={layerdrop: 0.0}"]
    overrides = tiny_train_overrides(tone_corpus) + encoder + [
        "model.freeze.frontend=true", "train.save_every=1", "train.valid_every=100", "train.log_every=1"]
    exp = tmp_path / "exp"
    train(load_config(None, overrides + ["train.max_steps=2"]), exp)
    first = load_experiment(exp, "step-1")[2].encoder.state_dict()
    # The experiment directory holds all that rebuilding the model needs: the source may be gone.
    shutil.move(source, tmp_path / "moved")
    train(load_config(None, overrides + ["train.max_steps=3"]), exp, resume=True)
    _, _, model = load_experiment(exp, "step-3")
    trained = model.encoder.state_dict()
    frozen = {id(p) for m in model.encoder.frontend_modules() for p in m.parameters()}
    frontend = {n for n, p in model.encoder.named_parameters() if id(p) in frozen}
    changed = {k for k in trained if not torch.equal(trained[k], first[k])}
    assert frontend and changed and not changed & frontend   # the feature encoder stayed frozen, the layers trained
    write_average(exp, last=2)
    results = decode(exp, [tone_corpus["dev"]], mode="attention_rescoring", beam=2, checkpoint="avg-last2")
    assert results["tones_dev"].overall().utts == 8
    assert (exp / "decode" / "avg-last2" / "cer-tones_dev-attention_rescoring.md").is_file()
