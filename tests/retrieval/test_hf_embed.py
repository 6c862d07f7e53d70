"""Every transformers speech family through embed and the YuBao protocol (issue 47): pooled vectors and frame states
of every layer written, the 8x8 protocol scored at every layer, on the fake YuBao tree."""

import numpy as np
import pytest

from data_prep.yubao import prepare_yubao
from speechalign.retrieval.embed import EmbeddingStore, build_source, embed
from speechalign.retrieval.run import RetrievalOptions, run_retrieve
from tests.fake_corpora import yubao_tree
from tests.hf_models import TINY_MODELS, save_tiny_model, save_tiny_whisper


@pytest.fixture(scope="module")
def yubao_cuts(tmp_path_factory):
    root = tmp_path_factory.mktemp("yubao")
    tree = yubao_tree(root / "scraped")
    prepare_yubao(tree, root / "data", sites_yaml=tree / "sites.yaml")
    return root / "data" / "yubao_cuts_test.jsonl.gz"


@pytest.mark.parametrize("name", sorted(TINY_MODELS) + ["whisper"])
def test_embed_every_layer_and_score_yubao(name, yubao_cuts, tmp_path):
    model = save_tiny_whisper(tmp_path / name) if name == "whisper" else save_tiny_model(tmp_path / name, name)
    encoder, source = build_source(encoder_dir=model)
    assert source["model_type"] == TINY_MODELS.get(name, ("whisper",))[0]
    # a batch of several utterances: what an utterance is batched with must not reach its vector
    out = embed([yubao_cuts], tmp_path / "emb", encoder, source, frames=True, max_duration=30.0)
    alone = embed([yubao_cuts], tmp_path / "emb1", encoder, source, max_duration=0.1)
    store = EmbeddingStore.open(out)
    assert store.info["layers"] == [0, 1, 2]
    for layer in (0, 1, 2):
        pooled = store.pooled(layer)
        assert pooled.shape == (len(store.meta), 32) and np.isfinite(pooled).all()
        frames = store.frames(layer)
        assert [len(f) for f in frames] == [int(m["frames"]) for m in store.meta]
        np.testing.assert_allclose(pooled, np.stack([f.mean(0) for f in frames]), atol=2e-3)   # float16 frames
        np.testing.assert_allclose(EmbeddingStore.open(alone).pooled(layer), pooled, atol=1e-4)
    for layer in (0, 2):
        result = run_retrieve(out, tmp_path / "retrieval", RetrievalOptions(layer=layer, protocol="yubao"))
        assert (tmp_path / "retrieval" / f"yubao-seqsim-L{layer}-mean.md").is_file()
        table = result["result"].table
        groups = {m["subgroup"] for m in EmbeddingStore.open(out).meta}
        assert table.shape[0] == table.shape[1] >= 2 and table.shape[0] <= len(groups)
        assert np.isfinite(table[~np.eye(len(table), dtype=bool)]).all()
