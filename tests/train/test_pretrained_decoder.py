"""A pretrained (Whisper-style, BPE) attention decoder as the hybrid model's attention branch: loaded
weights, per-group learning rates, frozen embedding, dev YuBao R@1 during validation, checkpoint
selection by it, decoding in every supported mode, and resume."""

import pytest
import torch
import yaml
from safetensors.torch import load_file

from speechalign.config import load_config
from speechalign.decode.lm import LMOptions
from speechalign.decode.run import decode, supported_modes
from speechalign.models.experiment import load_experiment
from speechalign.train.checkpoint import list_checkpoints, select_for_average
from speechalign.train.trainer import Trainer, train

def _overrides(corpus, whisper_dir, steps=8):
    return [f"data.train=[{{cuts: [{corpus['train']}]}}]", f"data.dev=[{corpus['dev']}]", "data.max_duration=8",
            "data.num_buckets=2", "model.encoder=conformer", "model.conformer.d_model=32",
            "model.conformer.num_layers=2", "model.conformer.num_heads=2", "model.conformer.ffn_dim=64",
            f"model.decoder.pretrained={whisper_dir}", "model.decoder.dropout=0.0", "model.ctc_weight=0.5",
            "model.freeze.decoder_embedding=true", "optim.lr=2e-3", "optim.encoder_lr=1e-3", "optim.decoder_lr=1e-4",
            "optim.warmup_steps=2", f"train.max_steps={steps}", "train.valid_every=4", "train.save_every=4",
            "train.keep_last=0", "train.valid_each_epoch=false", "train.valid_retrieval_layers=[1, 2]"]


@pytest.fixture(scope="module")
def trained(parallel_corpus, whisper_like_dir, tmp_path_factory):
    exp = tmp_path_factory.mktemp("exp")
    cfg = load_config(None, _overrides(parallel_corpus, whisper_like_dir))
    train(cfg, exp)
    return exp


def test_pretrained_decoder_weights_and_lr_groups(parallel_corpus, whisper_like_dir, tmp_path):
    cfg = load_config(None, _overrides(parallel_corpus, whisper_like_dir))
    trainer = Trainer(cfg, tmp_path / "exp")
    pretrained = load_file(str(whisper_like_dir / "decoder.safetensors"))
    ours = trainer.model.decoder.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in pretrained.items())
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs["encoder"] < lrs["head"] and lrs["decoder"] < lrs["encoder"]
    assert not trainer.model.decoder.embed.weight.requires_grad
    assert (tmp_path / "exp" / "decoder.json").is_file() and (tmp_path / "exp" / "whisper_tokenizer.json").is_file()
    # the attention targets are the texts in the decoder's BPE vocabulary, framed by Whisper's prompt and eos
    vocab = trainer.model.att_vocab
    inp, gold, pad = trainer.model.teacher_forcing([vocab.encode("甲乙")], "cpu")
    assert inp[0, :4].tolist() == vocab.prefix and gold[0, :3].tolist() == [-1, -1, -1]
    assert vocab.decode(gold[0, 3:-1].tolist()) == "甲乙" and gold[0, -1] == vocab.eos and not pad.any()


def test_validation_tracks_dev_retrieval_and_average_selects_by_it(trained, whisper_like_dir):
    metrics = yaml.safe_load((trained / "checkpoints" / "step-4" / "metrics.yaml").read_text())
    assert set(metrics["valid_r1"]) == {1, 2}
    assert all(0.0 <= v <= 100.0 for v in metrics["valid_r1"].values())
    assert metrics["valid_r1_best"] == max(metrics["valid_r1"].values())
    steps = list_checkpoints(trained / "checkpoints")
    r1 = {d.name: yaml.safe_load((d / "metrics.yaml").read_text())["valid_r1_best"] for d in steps}
    best = select_for_average(trained / "checkpoints", best=1, metric="valid_r1")[0]
    assert r1[best.name] == max(r1.values())
    embed = load_file(str(steps[-1] / "model.safetensors"))["decoder.embed.weight"]
    assert torch.equal(embed, load_file(str(whisper_like_dir / "decoder.safetensors"))["embed.weight"])


def test_decode_every_supported_mode_from_the_experiment_dir(trained, parallel_corpus):
    _, _, model = load_experiment(trained)
    modes = supported_modes(model)
    assert {"attention_rescoring", "joint_beam", "attention_beam"} <= set(modes)
    for mode in modes:
        scorer = decode(trained, [parallel_corpus["dev"]], mode=mode, beam=3)["par_dev"]
        assert scorer.overall().utts == 12
    # joint_beam with Whisper's BPE decoder: its output is BPE text, scored against the same references
    recogs = (trained / "decode" / "latest" / "recogs-par_dev-joint_beam.txt").read_text(encoding="utf-8")
    assert "\ufffd" not in recogs
    header = (trained / "decode" / "latest" / "cer-par_dev-joint_beam.md").read_text(encoding="utf-8")
    assert "ctc_weight=0.1," in header       # the Whisper-decoder default, not the character decoder's 0.7
    with pytest.raises(ValueError, match="takes no character LM"):
        decode(trained, [parallel_corpus["dev"]], mode="joint_beam", beam=2, lm=LMOptions(trained / "x.arpa", 0.5))


def test_resume_with_pretrained_decoder_matches_uninterrupted(parallel_corpus, whisper_like_dir, tmp_path):
    # noam's schedule does not depend on max_steps, so a 4-step run resumed to 8 must equal 8 straight steps
    noam = ["optim.schedule=noam"]
    straight, exp = tmp_path / "straight", tmp_path / "exp"
    train(load_config(None, _overrides(parallel_corpus, whisper_like_dir) + noam), straight)
    train(load_config(None, _overrides(parallel_corpus, whisper_like_dir, steps=4) + noam), exp)
    train(load_config(None, _overrides(parallel_corpus, whisper_like_dir) + noam), exp, resume=True)
    a = load_file(str(exp / "checkpoints" / "step-8" / "model.safetensors"))
    b = load_file(str(straight / "checkpoints" / "step-8" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
