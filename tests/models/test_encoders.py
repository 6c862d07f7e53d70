import numpy as np
import pytest
import torch

from speechalign.config import load_config
from speechalign.models import build_model
from speechalign.models.encoders import build_encoder, load_pretrained_whisper_encoder
from speechalign.models.frontend import WhisperLogMel

TINY = {
    "whisper": ["model.whisper.d_model=32", "model.whisper.encoder_layers=2", "model.whisper.encoder_attention_heads=2",
                "model.whisper.encoder_ffn_dim=64"],
    "wav2vec2": ["model.wav2vec2.hidden_size=32", "model.wav2vec2.num_hidden_layers=2", "model.wav2vec2.intermediate_size=64",
                 "model.wav2vec2.num_attention_heads=2", "model.wav2vec2.conv_dim=[16,16,16,16,16,16,16]"],
    "conformer": ["model.conformer.d_model=32", "model.conformer.num_layers=2", "model.conformer.num_heads=2",
                  "model.conformer.ffn_dim=64"],
}
TINY["conformer8"] = [*TINY["conformer"], "model.conformer.subsampling_rate=8"]
# any transformers speech family through one adapter (tests/models/test_hf_encoder.py has every family)
TINY["hf"] = ["model.hf.model_type=hubert", "model.hf.config={hidden_size: 32, num_hidden_layers: 2, "
              "num_attention_heads: 2, intermediate_size: 64, conv_dim: [16, 16, 16, 16, 16, 16, 16]}"]


def tiny_cfg(name, *extra):
    return load_config(None, [f"model.encoder={name.removesuffix('8')}", *TINY[name], *extra])


@pytest.mark.parametrize("name", sorted(TINY))
def test_all_layers_and_lengths(name):
    torch.manual_seed(0)
    enc = build_encoder(tiny_cfg(name)).eval()
    wav = torch.randn(2, 32000) * 0.1
    lens = torch.tensor([32000, 16000])
    wav[1, 16000:] = 0
    out = enc(wav, lens)
    assert len(out.hidden_states) == enc.num_layers + 1 == 3
    assert all(h.shape[:2] == out.hidden_states[0].shape[:2] for h in out.hidden_states)
    assert out.lengths[0] == out.last.shape[1]
    expected_short = 16000 / 16000 / enc.frame_shift
    assert abs(int(out.lengths[1]) - expected_short) <= 2


@pytest.mark.parametrize("name", sorted(TINY))
def test_states_do_not_depend_on_batch_padding(name):
    torch.manual_seed(0)
    enc = build_encoder(tiny_cfg(name)).eval()
    wav = torch.randn(2, 32000) * 0.1
    wav[1, 20000:] = 0
    lens = torch.tensor([32000, 20000])
    batched = enc(wav, lens)
    alone = enc(wav[1:, :20000], lens[1:])
    n = int(alone.lengths[0])
    assert int(batched.lengths[1]) == n
    for b, a in zip(batched.hidden_states, alone.hidden_states):
        torch.testing.assert_close(b[1, :n], a[0, :n], atol=1e-4, rtol=1e-4)


def test_conformer_subsampling_channels():
    narrow = build_encoder(tiny_cfg("conformer", "model.conformer.subsampling_channels=8"))
    wide = build_encoder(tiny_cfg("conformer"))
    assert narrow.subsampling.conv[2].out_channels == 8 and wide.subsampling.conv[2].out_channels == 32
    wav, lens = torch.randn(1, 16000) * 0.1, torch.tensor([16000])
    a, b = narrow(wav, lens), wide(wav, lens)
    assert a.last.shape == b.last.shape and a.last.shape[-1] == 32 and torch.equal(a.lengths, b.lengths)


@pytest.mark.parametrize("rate", [4, 8])
def test_conformer_min_samples_is_the_shortest_input_with_a_frame(rate):
    enc = build_encoder(tiny_cfg("conformer", f"model.conformer.subsampling_rate={rate}")).eval()
    assert enc.frame_shift == pytest.approx(rate / 100)
    feats, lens = enc.frontend(torch.randn(1, enc.min_samples) * 0.1, torch.tensor([enc.min_samples]))
    assert feats.shape[1] == {4: 7, 8: 15}[rate] and int(enc.subsampling(feats, lens)[1][0]) == 1
    shorter, _ = enc.frontend(torch.randn(1, enc.min_samples - 1) * 0.1, torch.tensor([enc.min_samples - 1]))
    assert shorter.shape[1] == feats.shape[1] - 1
    long = enc(torch.randn(1, 48000) * 0.1, torch.tensor([48000]))
    assert abs(long.last.shape[1] - 3 / enc.frame_shift) <= 2


def test_conformer_subsampling_rate_must_be_known():
    with pytest.raises(ValueError, match="model.conformer.subsampling_rate: 6"):
        build_encoder(tiny_cfg("conformer", "model.conformer.subsampling_rate=6"))


def test_whisper_logmel_matches_feature_extractor():
    from transformers import WhisperFeatureExtractor

    x = (np.random.default_rng(0).standard_normal(16000 * 3) * 0.1).astype(np.float32)
    ref = WhisperFeatureExtractor(feature_size=80)(x, sampling_rate=16000, return_tensors="np").input_features[0]
    wav = torch.zeros(1, 480000)
    wav[0, : len(x)] = torch.from_numpy(x)
    ours, lens = WhisperLogMel(80)(wav, torch.tensor([480000]))
    assert ours.shape[-1] == 3000 and int(lens[0]) == 3000
    np.testing.assert_allclose(ours[0].numpy(), ref, atol=1e-4)


def test_whisper_pad30_equals_transformers_encoder():
    from transformers import WhisperFeatureExtractor

    torch.manual_seed(0)
    enc = build_encoder(tiny_cfg("whisper", "model.whisper.length_mode=pad30")).eval()
    x = (np.random.default_rng(1).standard_normal(16000 * 2) * 0.1).astype(np.float32)
    feats = WhisperFeatureExtractor(feature_size=80)(x, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ref = enc.encoder(feats, output_hidden_states=True).hidden_states
        ours = enc(torch.from_numpy(x)[None], torch.tensor([len(x)]))
    # The heads read the whole window, as Whisper's decoder was trained to; embeddings the 2 s of speech.
    assert int(ours.lengths[0]) == 1500 and int(ours.speech_lengths[0]) == 100
    for r, o in zip(ref, ours.hidden_states):
        torch.testing.assert_close(o, r, atol=1e-4, rtol=1e-4)


def test_whisper_trim_close_to_pad30_and_rejects_long_input():
    torch.manual_seed(0)
    cfg = tiny_cfg("whisper")
    trim = build_encoder(cfg).eval()
    pad = build_encoder(tiny_cfg("whisper", "model.whisper.length_mode=pad30")).eval()
    pad.load_state_dict(trim.state_dict())
    wav = torch.randn(1, 48000) * 0.1
    a = trim(wav, torch.tensor([48000])).last.mean(1)
    b = pad(wav, torch.tensor([48000])).last[:, :150].mean(1)
    assert torch.nn.functional.cosine_similarity(a, b).item() > 0.9
    with pytest.raises(ValueError, match="exceeds"):
        pad(torch.zeros(1, 16000 * 31), torch.tensor([16000 * 31]))


def test_pretrained_whisper_from_local_dirs(tmp_path):
    from transformers import WhisperConfig, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    full = WhisperModel(config)
    full.save_pretrained(tmp_path / "full")
    enc_only = WhisperEncoder(config)
    enc_only.save_pretrained(tmp_path / "enc")
    a = load_pretrained_whisper_encoder(str(tmp_path / "full"))
    b = load_pretrained_whisper_encoder(str(tmp_path / "enc"))
    torch.testing.assert_close(a.conv1.weight, full.encoder.conv1.weight)
    torch.testing.assert_close(b.layers[1].fc1.weight, enc_only.layers[1].fc1.weight)
    cfg = load_config(None, ["model.encoder=whisper", f"model.whisper.pretrained={tmp_path / 'enc'}"])
    model = build_model(cfg, vocab_size=10)
    assert model.encoder.dim == 32 and model.encoder.num_layers == 2


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown encoder 'lstm'.*conformer"):
        build_encoder(load_config(None, ["model.encoder=lstm"]))


@pytest.mark.parametrize("name", sorted(TINY))
def test_hybrid_loss_and_freezing(name):
    torch.manual_seed(0)
    cfg = tiny_cfg(name, "model.decoder.num_layers=1", "model.decoder.ffn_dim=64", "model.decoder.num_heads=2",
                   "model.ctc_weight=0.3")
    model = build_model(cfg, vocab_size=12)
    out = model(torch.randn(2, 32000) * 0.1, torch.tensor([32000, 24000]), [[3, 4, 5], [6]])
    torch.testing.assert_close(out["loss"], 0.3 * out["ctc"] + 0.7 * out["att"])
    model.set_frozen(frontend=True, first_layers=1, whole_encoder=False)
    frozen = {id(p) for m in model.encoder.frontend_modules() + model.encoder.layer_modules()[:1] for p in m.parameters()}
    for p in model.encoder.parameters():
        assert p.requires_grad == (id(p) not in frozen) or not p.requires_grad
    assert all(p.requires_grad for p in model.encoder.layer_modules()[1].parameters())
    assert all(p.requires_grad for p in model.ctc.parameters())
    model.set_frozen(frontend=False, first_layers=0, whole_encoder=True)
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_ctc_weight_below_one_needs_decoder():
    with pytest.raises(ValueError, match="needs an attention decoder"):
        build_model(tiny_cfg("conformer", "model.ctc_weight=0.5"), vocab_size=10)


def test_whisper_tail_is_the_utterance_followed_by_silence():
    torch.manual_seed(0)
    tail = build_encoder(tiny_cfg("whisper", "model.whisper.tail_seconds=0.5")).eval()
    plain = build_encoder(tiny_cfg("whisper")).eval()
    plain.load_state_dict(tail.state_dict())
    wav = torch.randn(2, 32000) * 0.1
    wav[1, 20000:] = 1.0  # batch padding that is not silence must not reach the tail
    lens = torch.tensor([32000, 20000])
    with torch.no_grad():
        out = tail(wav, lens)
        # 125 feature frames, odd: one 10-ms frame of silence more, so the last convolution reads silence
        silence = torch.cat([wav[1:, :20000], torch.zeros(1, 8000 + 160)], 1)
        manual = plain(silence, torch.tensor([28160]))
    assert out.lengths.tolist() == [100 + 25, 63 + 25]
    assert out.speech_lengths.tolist() == [100, 63]
    n = int(manual.lengths[0])
    assert int(out.lengths[1]) == n
    for o, m in zip(out.hidden_states, manual.hidden_states):
        torch.testing.assert_close(o[1, :n], m[0, :n], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("extra, match", [(["model.whisper.tail_seconds=0.01"], "multiple of 0.02"),
                                          (["model.whisper.tail_seconds=-1"], ">= 0"),
                                          (["model.whisper.tail_seconds=1", "model.whisper.length_mode=pad30"],
                                           "only with length_mode=trim")])
def test_whisper_tail_rejects_bad_values(extra, match):
    with pytest.raises(ValueError, match=match):
        build_encoder(tiny_cfg("whisper", *extra))
