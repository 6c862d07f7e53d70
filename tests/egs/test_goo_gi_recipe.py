"""egs/goo-gi/run.sh on fake goo-gi / lan-lai / tw-hokkien / foochow-idioms / kasu100 trees: the full recipe
as a dry run (miniature training, the transformers peer) with a tiny imported Whisper for the baseline rows.
``--eval-only`` on another copy is tested in test_goo_gi_eval_only.py (its own file, so the two run in parallel)."""

import pytest

from speechalign.data.manifest import open_cuts
from tests.egs.goo_gi import DEFAULT_EXP, goo_gi_material, recipe_args, table_rows
from tests.egs.test_egs_dry_run import run_egs

pytest.importorskip("ctranslate2", reason="the zero-shot Whisper row needs ctranslate2")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    return goo_gi_material(tmp_path_factory.mktemp("real"))


def test_recipe_dry_run(corpora, tmp_path):
    out = tmp_path / "exp"
    run_egs("goo-gi", *recipe_args(corpora, out), "--peer")
    dry = out / "dry-run"
    cer = table_rows(dry / "cer-goo-gi-test.md")
    assert {"fbank", "whisper-base-random", "whisper-base-trim", "whisper-base-pad30",
            "zero-shot Whisper-base (whisper_greedy)", "zero-shot Whisper-base (faster_whisper_beam5)",
            "zero-shot Whisper-base (faster_whisper_beam1)", f"{DEFAULT_EXP} (ctc_greedy+packed)",
            f"{DEFAULT_EXP} (attention_rescoring+packed)", f"{DEFAULT_EXP} (ctc_prefix_beam+lm+packed)",
            f"{DEFAULT_EXP} (attention_beam)", f"{DEFAULT_EXP} (attention_beam+route)",
            f"{DEFAULT_EXP} (attention_rescoring+lm+packed)", "transformers peer (greedy generate)"} <= cer
    assert (dry / DEFAULT_EXP / "decode" / "latest" / "lm-effect.md").is_file()
    # the alternatives table: every part of every row found (the labels say which output each row is)
    alt = {r.split(" | ")[0].lstrip("| "): r.rstrip(" |").split(" | ")[1:]
           for r in (dry / "alternatives.md").read_text(encoding="utf-8").splitlines()
           if r.startswith("| ") and not r.startswith("| system")}
    assert [k.split(" (")[0] for k in alt] == ["zero-shot Whisper-base", "transformers peer",
                                               f"speechalign {DEFAULT_EXP}", f"speechalign {DEFAULT_EXP}"]
    assert all("n/a" not in v for v in alt.values()), alt
    assert alt["transformers peer (Seq2SeqTrainer, greedy generate)"][4] == "2"   # the dry run's 2 steps
    assert alt[f"speechalign {DEFAULT_EXP} (attention_beam)"][4] == "1"
    # Mandarin routed to the pretrained weights: a router fitted in stage 4, its routes listed per utterance
    routed = alt[f"speechalign {DEFAULT_EXP} (attention_beam, Mandarin routed to the pretrained weights)"]
    assert routed[2] == alt[f"speechalign {DEFAULT_EXP} (attention_beam)"][2]   # the same encoder's retrieval
    routes = (dry / DEFAULT_EXP / "decode" / "latest" / "routes-goo-gi_test-attention_beam+route.tsv").read_text()
    test_ids = {c.id for c in open_cuts(dry / "data" / "goo-gi_cuts_test.jsonl.gz")}
    assert {line.split("\t")[0] for line in routes.splitlines()[1:]} == test_ids
    assert alt["zero-shot Whisper-base (faster-whisper defaults, beam 5; embedding: pretrained, trim)"][4:] == ["0", "0"]
    rows = table_rows(dry / "yubao-goo-gi-test.md")
    yubao = {r for r in rows if not r.startswith("text-")}
    assert yubao == {"fbank", "whisper-base-random", "whisper-base-trim", "whisper-base-pad30", DEFAULT_EXP,
                     "transformers-peer"}
    # the cascade rows: reference transcripts (the ceiling), zero-shot and the fine-tuned model's transcripts
    assert {"text-reference", "text-zero-shot-whisper_greedy", "text-zero-shot-faster_whisper_beam5",
            f"text-{DEFAULT_EXP}-attention_rescoring+packed", "text-transformers-peer-greedy"} <= rows
    assert (dry / "yubao-goo-gi-test.png").stat().st_size > 0
    # one retrieve call per system: both YuBao scorings, both centerings, every layer
    assert {p.name for p in (dry / "retrieval" / "goo-gi" / DEFAULT_EXP).glob("yubao-*-L2-*.md")} == {
        f"yubao-{mode}-L2-mean{c}.md" for mode in ("seqsim", "pooled") for c in ("", "-center")}
    assert {r.split("/")[0] for r in table_rows(dry / "hokkien-to-mandarin.md")} == yubao
    page = (dry / "retrieval.html").read_text(encoding="utf-8")
    assert f'"source":"tw-hokkien/{DEFAULT_EXP}"' in page and '"source":"goo-gi/fbank","name":"yubao-' in page
    # the training manifest never holds a dev/test sentence id, in any variety
    assert "goo-gi: kept dev: 3, test: 6, train: 8" in (dry / "data" / "goo-gi_prep_report.txt").read_text()
    # the two extra corpora join the training mix; zero-shot output is scored against the Mandarin sentences too
    config = (dry / DEFAULT_EXP / "config.yaml").read_text(encoding="utf-8")
    assert "foochow-idioms_cuts_train" in config and "kasu100_cuts_train" in config
    assert list((dry / "zero-shot").glob("bleu-goo-gi_test-*.md"))
