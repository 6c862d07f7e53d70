"""The encoder table (issue 47): egs/yubao/run.sh --encoders embeds each named transformers encoder at every layer,
scores the YuBao protocol at every layer and writes one table and one layer plot of them all."""

from speechalign.retrieval.compare import yubao_runs
from tests import fake_corpora
from tests.egs.goo_gi import table_rows
from tests.egs.test_egs_dry_run import run_egs
from tests.hf_models import save_tiny_model


def test_yubao_encoder_table_on_the_fake_tree(tmp_path):
    hubert = save_tiny_model(tmp_path / "models" / "hubert", "hubert")
    bert = save_tiny_model(tmp_path / "models" / "w2v-bert", "wav2vec2-bert")
    out = tmp_path / "exp"
    run_egs("yubao", "--corpus-dir", fake_corpora.yubao_tree(tmp_path / "scraped"), "--out", out,
            "--encoders", hubert, f"w2v-BERT={bert}")
    assert table_rows(out / "encoders.md") == {"hubert", "w2v-BERT"}
    table = (out / "encoders.md").read_text(encoding="utf-8")
    header = next(line for line in table.splitlines() if line.startswith("| system"))
    assert header == "| system | pooled | pooled centered | seqsim | seqsim centered | best |"
    assert (out / "encoders.png").stat().st_size > 5000
    for label in ("hubert", "w2v-BERT"):
        runs = yubao_runs(out / "encoders" / label / "retrieval")
        # every layer of every encoder (input embedding, 2 layers) under each protocol and centering
        assert {k: sorted(v) for k, v in runs.items()} == {(m, c): [0, 1, 2] for m in ("pooled", "seqsim")
                                                           for c in (False, True)}
    assert "model_type: wav2vec2-bert" in (out / "encoders" / "w2v-BERT" / "emb" / "info.yaml").read_text()
