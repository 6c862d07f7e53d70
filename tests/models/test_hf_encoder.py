"""One adapter for every transformers speech family: layers, frame rate, masks, batch independence, the model's
own feature extractor, and one-line errors. Tiny random-init models, saved and loaded as a hub directory."""

import json

import numpy as np
import pytest
import torch

from speechalign.config import ConfigError, load_config
from speechalign.models import build_model
from speechalign.models.encoders import build_encoder, load_speech_encoder
from speechalign.models.hf_encoder import READS_PADDING, saved_speech_encoder
from tests.hf_models import TINY_MODELS, save_tiny_model, save_tiny_whisper

NAMES = sorted(TINY_MODELS) + ["whisper"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    dirs = {name: save_tiny_model(root / name, name) for name in TINY_MODELS}
    dirs["whisper"] = save_tiny_whisper(root / "whisper")
    return dirs


def batch(seed: int = 0, padding: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Three utterances of 2, 1.25 and 0.7 s; the shortest one's padding holds ``padding`` (it must not matter)."""
    wav = torch.randn(3, 32000, generator=torch.Generator().manual_seed(seed)) * 0.1
    lens = torch.tensor([32000, 20000, 11200])
    wav[1, 20000:] = 0.0
    wav[2, 11200:] = padding
    return wav, lens


@pytest.mark.parametrize("name", NAMES)
def test_layers_frame_rate_and_lengths(model_dirs, name):
    enc = load_speech_encoder(str(model_dirs[name])).eval()
    wav, lens = batch()
    with torch.no_grad():
        out = enc(wav, lens)
    assert enc.num_layers == 2 and len(out.hidden_states) == 3 and enc.dim == 32
    assert enc.frame_shift == pytest.approx(0.02)
    assert all(h.shape[:2] == out.last.shape[:2] for h in out.hidden_states)
    speech = out.speech_lengths.tolist()
    assert speech[0] <= out.last.shape[1] and speech[0] in (99, 100)   # 2 s at 50 frames/s, less the edges
    for n, frames in zip(lens.tolist(), speech):
        assert abs(frames - n / 16000 / 0.02) <= 2
    if name != "whisper":
        assert enc._frames(enc.min_samples) == 1 and enc._frames(enc.min_samples - 1) == 0
        with torch.no_grad():
            short = enc(torch.randn(1, enc.min_samples) * 0.1, torch.tensor([enc.min_samples]))
        assert short.lengths.tolist() == [1] and short.last.shape[1] >= 1


@pytest.mark.parametrize("name", NAMES)
def test_padded_and_unpadded_inputs_give_the_same_states(model_dirs, name):
    enc = load_speech_encoder(str(model_dirs[name])).eval()
    # Whisper's 25-ms log-mel windows reach past an utterance's end: it reads batches zero-padded, as the loader pads
    wav, lens = batch(1, padding=0.0 if name == "whisper" else 0.5)
    with torch.no_grad():
        batched = enc(wav, lens)
        for i, n in enumerate(lens.tolist()):
            alone = enc(wav[i : i + 1, :n], lens[i : i + 1])
            frames = int(alone.speech_lengths[0])
            assert int(batched.speech_lengths[i]) == frames
            for b, a in zip(batched.hidden_states, alone.hidden_states):
                torch.testing.assert_close(b[i, :frames], a[0, :frames], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_a_family_runs_alone_exactly_when_its_batches_leak(model_dirs, name):
    """The adapter reads a batch at once only where padding cannot reach the real frames."""
    enc = load_speech_encoder(str(model_dirs[name])).eval()
    group = enc.model.config.model_type in READS_PADDING or getattr(enc.model.config, "feat_extract_norm", "") == "group"
    assert enc.alone == group
    enc.alone = False
    wav, lens = batch(2)
    with torch.no_grad():
        n = enc._frames(20000)
        batched, alone = enc(wav, lens).last[1, :n], enc(wav[1:2, :20000], lens[1:2]).last[0, :n]
    assert (not torch.allclose(batched, alone, atol=1e-3)) == group


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_states_are_the_models_own_on_its_extractors_input(model_dirs, name):
    """One utterance: exactly what plain transformers computes from the feature extractor's output."""
    from transformers import AutoFeatureExtractor, AutoModel

    path = str(model_dirs[name])
    enc = load_speech_encoder(path).eval()
    model, extractor = AutoModel.from_pretrained(path).eval(), AutoFeatureExtractor.from_pretrained(path)
    x = (np.random.default_rng(3).standard_normal(23456) * 0.2 + 0.05).astype(np.float32)
    inputs = extractor(x, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        ref = model(**inputs, output_hidden_states=True).hidden_states
        ours = enc(torch.from_numpy(x)[None], torch.tensor([len(x)]))
    assert len(ours.hidden_states) == len(ref)
    n = int(ours.lengths[0])
    for o, r in zip(ours.hidden_states, ref):
        assert r.shape[1] in (n, n + 1)   # w2v-BERT's extractor pads an odd frame count to an even one
        torch.testing.assert_close(o[0, :n], r[0, :n], atol=1e-4, rtol=1e-4)


def test_random_init_keeps_the_architecture_not_the_weights(model_dirs):
    torch.manual_seed(5)
    rand = load_speech_encoder(str(model_dirs["wavlm"]), random_init=True)
    real = load_speech_encoder(str(model_dirs["wavlm"]))
    assert rand.num_layers == real.num_layers and rand.extractor.to_dict() == real.extractor.to_dict()
    assert not torch.equal(rand.layer_modules()[0].attention.q_proj.weight, real.layer_modules()[0].attention.q_proj.weight)


def test_unsupported_model_type_is_one_line(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ValueError) as e:
        load_speech_encoder(str(tmp_path))
    assert str(e.value).count("\n") == 0
    assert str(e.value) == (f"{tmp_path}: model_type 'bert' is not a supported speech encoder; supported: "
                            "data2vec-audio, hubert, wav2vec2, wav2vec2-bert, wav2vec2-conformer, wavlm, whisper")
    with pytest.raises(ValueError, match=r"^model.hf.model_type: model_type 'bert' is not a supported speech encoder"):
        build_encoder(load_config(None, ["model.encoder=hf", "model.hf.model_type=bert"]))
    with pytest.raises(ValueError, match=r"^.*no-such-dir: not a transformers model directory or hub id"):
        load_speech_encoder(str(tmp_path / "no-such-dir"))


def test_config_errors_name_the_key(model_dirs):
    with pytest.raises(ConfigError, match="model.hf: set pretrained .* or model_type"):
        load_config(None, ["model.encoder=hf"])
    with pytest.raises(ValueError, match=r"model.hf.config: \['hidden_sizes'\] are not fields of HubertConfig"):
        build_encoder(load_config(None, ["model.encoder=hf", "model.hf.model_type=hubert",
                                         "model.hf.config={hidden_sizes: 8}"]))
    with pytest.raises(ValueError, match="model.hf.model_type: wavlm, but .* is a hubert model"):
        build_encoder(load_config(None, ["model.encoder=hf", f"model.hf.pretrained={model_dirs['hubert']}",
                                         "model.hf.model_type=wavlm"]))
    with pytest.raises(ValueError, match="a Whisper model trains as model.encoder: whisper"):
        build_encoder(load_config(None, ["model.encoder=hf", f"model.hf.pretrained={model_dirs['whisper']}"]))
    with pytest.raises(ValueError, match="weights do not match its config.*missing_keys"):
        load_speech_encoder(str(model_dirs["hubert"]), values={"num_hidden_layers": 3})
    with pytest.raises(ValueError, match="--length-mode applies to Whisper encoders, this is wavlm"):
        load_speech_encoder(str(model_dirs["wavlm"]), length_mode="pad30")


def test_a_recipe_key_builds_it_and_an_experiment_rebuilds_it_offline(model_dirs, tmp_path):
    """model.hf.pretrained loads the weights; encoder_config.json (what training writes) rebuilds the same
    architecture and feature extractor without the source directory."""
    cfg = load_config(None, ["model.encoder=hf", f"model.hf.pretrained={model_dirs['wav2vec2-bert']}",
                             "model.hf.config={layerdrop: 0.0}"])
    model = build_model(cfg, vocab_size=10)
    enc = model.encoder
    assert enc.model.config.layerdrop == 0.0 and enc.fbank
    enc.hf_config.to_json_file(str(tmp_path / "encoder_config.json"))
    assert "feature_extractor" not in enc.model.config.to_dict()   # the exported config.json stays plain
    again = saved_speech_encoder(tmp_path / "encoder_config.json")
    again.load_state_dict(enc.state_dict())
    wav, lens = batch()
    with torch.no_grad():
        a, b = enc.eval()(wav, lens), again.eval()(wav, lens)
    assert all(torch.equal(x, y) for x, y in zip(a.hidden_states, b.hidden_states))
    assert json.loads((tmp_path / "encoder_config.json").read_text())["feature_extractor"]["stride"] == 2


def test_random_init_family_and_freezing(model_dirs):
    """model.hf.model_type without pretrained: the family's random init; freezing reaches the convolutional
    feature encoder and the first layers."""
    cfg = load_config(None, ["model.encoder=hf", "model.hf.model_type=data2vec-audio",
                             "model.hf.config={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, "
                             "intermediate_size: 64, conv_dim: [16, 16, 16, 16, 16, 16, 16]}"])
    model = build_model(cfg, vocab_size=10)
    assert model.encoder.model.feature_extractor.conv_layers[0].conv.out_channels == 16
    assert model.encoder.extractor.return_attention_mask and model.encoder.alone   # data2vec reads padding
    model.set_frozen(frontend=True, first_layers=1, whole_encoder=False)
    enc = model.encoder.model
    assert not any(p.requires_grad for p in enc.feature_extractor.parameters())
    assert not any(p.requires_grad for p in enc.feature_projection.parameters())
    assert not any(p.requires_grad for p in enc.encoder.layers[0].parameters())
    assert all(p.requires_grad for p in enc.encoder.layers[1].parameters())


def test_lora_on_a_hubert(model_dirs):
    """peft adapters on the trained layers' attention and feed-forward projections; their bases stay frozen."""
    cfg = load_config(None, ["model.encoder=hf", f"model.hf.pretrained={model_dirs['hubert']}",
                             "model.lora.rank=4", "model.freeze.first_layers=1", "model.freeze.frontend=true",
                             "model.lora.encoder_modules=[q_proj, v_proj, intermediate_dense, output_dense]"])
    model = build_model(cfg, vocab_size=10)
    model.set_frozen(frontend=True, first_layers=1, whole_encoder=False)
    trained = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n and ".layers.1." in n for n in trained)
    assert any("intermediate_dense.lora_A" in n for n in trained) and any("q_proj.lora_B" in n for n in trained)
    wav, lens = batch()
    loss = model(wav, lens, [[3, 4], [5], [6, 7]])["loss"]
    loss.backward()
    assert all(model.encoder.get_parameter(n).grad is not None for n in trained if "lora_B" in n)
