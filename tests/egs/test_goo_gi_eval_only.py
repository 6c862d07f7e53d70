"""egs/goo-gi/run.sh --eval-only: a held-out copy of goo-gi evaluated with an experiment trained by the recipe's
own dry run (stages 0-2 on the fake trees; the full recipe is test_goo_gi_recipe.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.egs.goo_gi import DEFAULT_EXP, goo_gi_material, recipe_args, table_rows
from tests.egs.test_egs_dry_run import run_egs

pytest.importorskip("ctranslate2", reason="the zero-shot Whisper row needs ctranslate2")


def test_eval_only_on_another_copy(tmp_path):
    corpora = goo_gi_material(tmp_path / "real")
    run_egs("goo-gi", *recipe_args(corpora, tmp_path / "exp"), "--stop-stage", "2")
    trained = tmp_path / "exp" / "dry-run" / DEFAULT_EXP
    assert (trained / "checkpoints").is_dir() and not (tmp_path / "exp" / "dry-run" / "cer-goo-gi-test.md").exists()
    # A router fitted beside the trained checkpoint (stage 4 of a full run) is used by --eval-only as it is. (The
    # dry run's miniature has no pretrained weights to route Mandarin to: it routes to a checkpoint of its own.)
    subprocess.run([Path(sys.executable).parent / "speechalign", "train-router", "--exp-dir", str(trained),
                    "--checkpoint", "latest", "--cuts", str(tmp_path / "exp" / "dry-run" / "data" /
                                                            "goo-gi_cuts_train.jsonl.gz"),
                    "--route", "Mandarin=step-1"], check=True, capture_output=True)
    copy = tmp_path / "eval"
    # without --tw-hokkien (optional; the full recipe test covers it): goo-gi alone is evaluated
    run_egs("goo-gi", "--eval-only", "--goo-gi", corpora["goo-gi"], "--exp", trained, "--checkpoint", "latest",
            "--whisper-dir", corpora["whisper"], "--out", copy, "--dry-run")
    report = (copy / "data" / "goo-gi_prep_report.txt").read_text()
    assert "kept test: 17;" in report   # every sentence of the copy (g 002 has no audio), no train/dev split
    assert {f"{DEFAULT_EXP} (ctc_greedy+packed)", f"{DEFAULT_EXP} (attention_beam+route)"} <= \
        table_rows(copy / "cer-goo-gi-test.md")
    embedded = {r for r in table_rows(copy / "yubao-goo-gi-test.md") if not r.startswith("text-")}
    assert embedded == {"fbank", "whisper-base-random", "whisper-base-trim", "whisper-base-pad30", DEFAULT_EXP}
    # the CTC modes of a 30-s-window experiment read packed windows (issue 45; the dry run's character decoder
    # keeps attention_beam in PyTorch: --engine ct2 is tested in tests/decode/test_ct2_engine.py)
    assert "packed evaluation" in (trained / "decode" / "latest" / "cer-goo-gi_test-ctc_greedy+packed.md").read_text()
    assert not (copy / DEFAULT_EXP).exists()
    assert not (copy / "emb" / "tw-hokkien").exists() and not (copy / "hokkien-to-mandarin.md").exists()
