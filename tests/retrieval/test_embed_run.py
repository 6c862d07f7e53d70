import numpy as np
import pytest

from speechalign.cli import main
from speechalign.config import load_config
from speechalign.retrieval.embed import EmbeddingStore, build_source, embed, parse_layers
from speechalign.train.trainer import train
from tests.conftest import tiny_train_overrides


@pytest.fixture(scope="module")
def exp(tone_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    train(load_config(None, tiny_train_overrides(tone_corpus) + ["train.max_steps=4"]), out)
    return out


def test_embed_all_layers_pooled_and_frames(exp, tone_corpus, tmp_path):
    encoder, source = build_source(exp_dir=exp)
    out = embed([tone_corpus["dev"]], tmp_path / "emb", encoder, source, pooling=("mean", "max", "meanstd"),
                frames=True, shard_size=3, max_duration=2.0)
    store = EmbeddingStore.open(out)
    assert store.info["layers"] == [0, 1, 2] and store.info["num_shards"] == 3
    assert [m["dialect"] for m in store.meta][:2] == ["B", "A"] and store.meta[0]["sentence_id"] == "0"
    mean, mx, ms = (store.pooled(2, p) for p in ("mean", "max", "meanstd"))
    frames = store.frames(2)
    assert mean.shape == (8, 32) and ms.shape == (8, 64) and len(frames) == 8
    for i, f in enumerate(frames):
        assert len(f) == int(store.meta[i]["frames"])
        np.testing.assert_allclose(mean[i], f.mean(0), atol=2e-3)       # float16 frames
        np.testing.assert_allclose(mx[i], f.max(0), atol=2e-3)
    # The same utterance embedded alone gives the same vector: padding never leaks in.
    alone = embed([tone_corpus["dev"]], tmp_path / "emb1", encoder, source, shard_size=1, max_duration=0.1)
    np.testing.assert_allclose(EmbeddingStore.open(alone).pooled(2), mean, atol=1e-4)


def test_embed_resumes_finished_shards(exp, tone_corpus, tmp_path, monkeypatch):
    encoder, source = build_source(exp_dir=exp)
    out = embed([tone_corpus["dev"]], tmp_path / "emb", encoder, source, shard_size=4)
    first = (out / "shards" / "shard-00000.npz").stat().st_mtime_ns
    (out / "shards" / "shard-00001.npz").write_bytes(b"truncated")
    calls = []
    import speechalign.retrieval.embed as mod

    real = mod._embed_shard
    monkeypatch.setattr(mod, "_embed_shard", lambda *a, **k: calls.append(1) or real(*a, **k))
    embed([tone_corpus["dev"]], out, encoder, source, shard_size=4)
    assert len(calls) == 1 and (out / "shards" / "shard-00000.npz").stat().st_mtime_ns == first


def test_layer_errors_and_baselines(exp, tone_corpus, tmp_path):
    with pytest.raises(ValueError, match=r"valid layers are 0..2"):
        parse_layers("5", 2)
    assert parse_layers("-1,0", 2) == [2, 0]
    fb, src = build_source(features="fbank")
    store = EmbeddingStore.open(embed([tone_corpus["dev"]], tmp_path / "fb", fb, src, frames=True))
    assert store.info["layers"] == [0] and store.pooled(0).shape == (8, 80)
    with pytest.raises(ValueError, match="layer 3 not embedded; valid layers: \\[0\\]"):
        store.pooled(3)
    rand, src = build_source(exp_dir=exp, random_init=True)
    assert src["random_init"] is True


def test_cli_embed_retrieve_sweep(exp, tone_corpus, tmp_path):
    emb = tmp_path / "emb"
    assert main(["embed", "--exp-dir", str(exp), "--cuts", str(tone_corpus["dev"]), "--out", str(emb), "--frames"]) == 0
    assert main(["retrieve", "--emb-dir", str(emb), "--protocol", "pooled", "seqsim", "rerank",
                 "--center", "none", "dialect", "--layer", "1,2"]) == 0
    written = sorted(p.name for p in (emb / "retrieval").glob("*.md"))
    assert written == sorted(f"{p}-L{layer}-mean{c}.md" for p in ("pooled", "seqsim", "rerank") for layer in (1, 2)
                             for c in ("", "-center"))
    table = (emb / "retrieval" / "rerank-L2-mean-center.md").read_text(encoding="utf-8")
    assert "| A | B |" in table and "| mean | mean |" in table
    assert main(["sweep", "--emb-dir", str(emb)]) == 0
    assert (emb / "retrieval" / "sweep-mean.png").stat().st_size > 1000
    assert "best layer" in (emb / "retrieval" / "sweep-mean.md").read_text(encoding="utf-8")
    assert main(["retrieve", "--emb-dir", str(emb), "--layer", "7"]) == 1


def test_encoder_dir_length_modes(exp, tone_corpus, tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, num_mel_bins=80)
    WhisperEncoder(config).save_pretrained(tmp_path / "whisper")
    pooled = {}
    for mode in ("trim", "pad30"):
        encoder, source = build_source(encoder_dir=tmp_path / "whisper", length_mode=mode)
        assert encoder.length_mode == mode and source["length_mode"] == mode
        store = EmbeddingStore.open(embed([tone_corpus["dev"]], tmp_path / mode, encoder, source))
        assert store.info["source"]["length_mode"] == mode
        pooled[mode] = store.pooled(1)
    # Same weights, same real frames, but pad30 lets them attend to 30 s of padding.
    assert pooled["trim"].shape == pooled["pad30"].shape and not np.allclose(pooled["trim"], pooled["pad30"], atol=1e-3)
    with pytest.raises(ValueError, match="applies to Whisper encoders; .* has a conformer encoder"):
        build_source(exp_dir=exp, length_mode="pad30")     # a conformer experiment
    for random_init in (False, True):
        with pytest.raises(FileNotFoundError, match="missing config.yaml; is this a speechalign experiment"):
            build_source(exp_dir=tmp_path, random_init=random_init)
    with pytest.raises(ValueError, match="not to --features"):
        build_source(features="fbank", length_mode="trim")
    w2v = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=4)
    Wav2Vec2Model(w2v).save_pretrained(tmp_path / "w2v")
    with pytest.raises(ValueError, match="applies to Whisper encoders, this is wav2vec2"):
        build_source(encoder_dir=tmp_path / "w2v", length_mode="pad30")


def test_packed_embedding_pools_each_utterance_own_frames_of_its_window(tone_corpus, tmp_path):
    """embed --pack: utterances share 30-s windows (0.3 s apart) and each pools the frames at its own offset; a
    window of one utterance is that utterance read in its own 30-s window."""
    import torch

    from speechalign.data.dataset import collate_audio
    from speechalign.data.manifest import load_cuts
    from speechalign.data.packing import join_audio
    from speechalign.retrieval.embed import _packed_states
    from tests.models.test_export import make_experiment

    exp = make_experiment(tmp_path / "w", "whisper-pad30")
    encoder, source = build_source(exp_dir=exp)
    audio = [c.load_audio()[0] for c in load_cuts(tone_corpus["dev"]).subset(first=3)]
    wav, lens = collate_audio(audio)
    with torch.no_grad():
        states, speech = _packed_states(encoder, wav, lens, [2], 0.3)
        window = encoder(*collate_audio([join_audio(audio, 0.3)]))
        alone = encoder(wav, lens)
    assert speech.tolist() == alone.speech_lengths.tolist()
    first = 0.0
    for i, a in enumerate(audio):
        start = round(first / 0.02)
        n = int(speech[i])
        assert torch.equal(states[2][i, :n], window.hidden_states[2][0, start : start + n])
        first += len(a) / 16000 + 0.3
    packed = embed([tone_corpus["dev"]], tmp_path / "p", encoder, source, frames=True, max_duration=0.1,
                   pack_gap=0.3)   # one utterance per batch: one per window
    plain = embed([tone_corpus["dev"]], tmp_path / "u", encoder, source, frames=True, max_duration=0.1)
    np.testing.assert_allclose(EmbeddingStore.open(packed).pooled(2), EmbeddingStore.open(plain).pooled(2), atol=1e-5)
    assert EmbeddingStore.open(packed).info["packed"] == "30-s windows, 0.3-s gaps"
    conformer, csource = build_source(exp_dir=make_experiment(tmp_path / "c", "conformer"))
    with pytest.raises(ValueError, match="--pack"):
        embed([tone_corpus["dev"]], tmp_path / "c1", conformer, csource, pack_gap=0.3)
