"""model.align in the trainer, on a tiny imported Whisper reading packed 30-s windows of a parallel corpus: the
pairs land in different windows of one batch, the term joins the loss, resume is exact, and every report says
the model is not ASR-only."""

import torch

from speechalign.cli import main
from speechalign.decode.run import decode
from speechalign.retrieval.embed import EmbeddingStore, build_source, embed
from speechalign.train.trainer import Trainer
from tests.train.conftest import assert_same_weights, straight_and_resumed, whisper_cfg

ALIGN = ["data.pack={window: 30, gap: 0.3}", "model.whisper.length_mode=pad30", "data.max_duration=6",
         "data.parallel=2", "model.align={kind: pooled, layer: 2, weight: 1.0}"]


def test_pairs_share_a_batch_in_different_windows_and_the_term_joins_the_loss(parallel_corpus, whisper_pair, tmp_path):
    trainer = Trainer(whisper_cfg(parallel_corpus, whisper_pair, *ALIGN), tmp_path / "exp")
    batch = next(iter(trainer.loader))
    where = [(sid, item) for item, sids in enumerate(batch.part_sentences) for sid in sids]
    paired = {sid for sid, item in where if sum(s == sid for s, _ in where) == 2}
    assert paired and all(len({item for s, item in where if s == sid}) == 2 for sid in paired)   # two windows
    assert [len(s) for s in batch.part_spans] == [len(p) for p in batch.parts]
    model = trainer.model.train()
    out = model(batch.wav, batch.wav_lens, batch.targets, batch.parts, keep_attention=True)
    value = trainer.terms[0](out, batch)
    assert trainer.terms[0].name == "align" and torch.isfinite(value) and value > 0


def test_resume_is_exact_and_reports_say_not_asr_only(parallel_corpus, whisper_pair, tmp_path):
    (_, exp), (a, b) = straight_and_resumed(parallel_corpus, whisper_pair, tmp_path, *ALIGN)
    assert_same_weights(a, b)

    decode(exp, [parallel_corpus["dev"]], mode="ctc_greedy", beam=1)
    report = (exp / "decode" / "latest" / "cer-par_dev-ctc_greedy.md").read_text(encoding="utf-8")
    assert "not ASR-only: cross-dialect alignment (pooled InfoNCE at layer 2, weight 1) on parallel sentences" in report
    main(["compare", "ablation", str(exp), "--cer", "latest/cer-par_dev-ctc_greedy.tsv", "--out", str(tmp_path / "t")])
    row = (tmp_path / "t.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert row[1] == "transcript + pooled alignment L2 x1, k=2 (not ASR-only), full softmax"
    encoder, source = build_source(exp_dir=exp)
    store = EmbeddingStore.open(embed([parallel_corpus["dev"]], tmp_path / "emb", encoder, source))
    assert store.info["source"]["objective"].startswith("not ASR-only: cross-dialect alignment")
