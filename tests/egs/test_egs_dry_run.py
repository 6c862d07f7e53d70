"""Every egs/<corpus>/run.sh --dry-run on a fake corpus tree: manifests, a one-step miniature model,
averaging, decoding with every mode, and retrieval where the recipe has it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speechalign.config import load_config
from speechalign.train.trainer import train
from tests import fake_corpora
from tests.conftest import tiny_train_overrides

REPO = Path(__file__).resolve().parents[2]
MODES = ("ctc_greedy", "ctc_prefix_beam", "attention_rescoring", "joint_beam")


def run_egs(script: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", f"egs/{script}/run.sh", *map(str, args)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out


KESPEECH_PARTS = ("train_phase1", "train_phase2", "dev_phase1", "dev_phase2", "test")
ASR = {  # recipe -> (fake tree builder, test sets decoded)
    "kespeech": (lambda r: fake_corpora.kespeech_tree(r, KESPEECH_PARTS), ["kespeech_test"]),
    "mdcc": (fake_corpora.mdcc_tree, ["mdcc_test"]),
    "aishell": (fake_corpora.aishell_tree, ["aishell_test"]),
    "commonvoice": (fake_corpora.cv_tree, ["commonvoice-zh-CN_test", "commonvoice-zh-HK_test"]),
    "fleurs": (fake_corpora.fleurs_tree, ["fleurs-cmn_hans_cn_test", "fleurs-yue_hant_hk_test"]),
}


@pytest.mark.parametrize("recipe", sorted(ASR))
def test_asr_recipe_dry_run(recipe, tmp_path):
    build, test_sets = ASR[recipe]
    args = ("--corpus-dir", build(tmp_path / "corpus"), "--out", tmp_path / "exp", "--dry-run")
    run_egs(recipe, *args)
    out = tmp_path / "exp" / "dry-run"
    assert (out / "asr" / "avg-last1.safetensors").is_file() and (out / "asr" / "checkpoints" / "step-1").is_dir()
    for test_set in test_sets:
        for mode in MODES:
            tsv = out / "asr" / "decode" / "avg-last1" / f"cer-{test_set}-{mode}.tsv"
            assert "overall" in tsv.read_text(encoding="utf-8"), tsv
    assert "stage 4" in (out / "run.log").read_text(encoding="utf-8")
    if recipe == "fleurs":
        table = (out / "retrieval" / "fleurs-L2-mean-center.md").read_text(encoding="utf-8")
        assert "| Cantonese | Mandarin |" in table
        assert (out / "retrieval" / "sweep-mean-center.png").is_file()
    if recipe == "mdcc":   # idempotent: a second run skips what is done (one recipe shows it for all)
        again = run_egs(recipe, *args)
        assert "stage 0" not in again.stdout and "stage 2" not in again.stdout and "stage 3" in again.stdout


def test_multidialect_then_yubao_dry_run(tmp_path):
    dirs = [fake_corpora.kespeech_tree(tmp_path / "ke", KESPEECH_PARTS),
            fake_corpora.mdcc_tree(tmp_path / "mdcc"), fake_corpora.cv_tree(tmp_path / "cv"),
            fake_corpora.yubao_tree(tmp_path / "yubao")]
    # YuBao-like parallel speech joins the mixture: the alignment recipe (not ASR-only) trains on it
    from data_prep.yubao import prepare_yubao

    prepare_yubao(dirs[3], tmp_path / "parallel", sites_yaml=dirs[3] / "sites.yaml")
    parallel = sorted((tmp_path / "parallel").glob("*_cuts_*.jsonl.gz"))
    run = run_egs("multidialect", *[a for d in dirs for a in ("--corpus-dir", d)], "--out", tmp_path / "exp",
                  "--dry-run", *[a for p in parallel for a in ("--parallel-cuts", p)])
    log = run.stdout + run.stderr
    assert "packed into 30-s windows" in log and "+ align (weight 1.0)" in log   # the align recipe trained
    out = tmp_path / "exp" / "dry-run"
    for test_set in ("kespeech_test", "mdcc_test", "commonvoice-zh-HK_test", "commonvoice-zh-CN_test"):
        assert (out / "asr" / "decode" / "avg-last1" / f"cer-{test_set}-joint_beam.md").is_file()
    report = (out / "asr" / "decode" / "avg-last1" / "cer-kespeech_test-joint_beam.md").read_text(encoding="utf-8")
    assert "not ASR-only: cross-dialect alignment (pooled InfoNCE at layer" in report
    matrix = (out / "yubao" / "dry-run" / "retrieval" / "yubao-seqsim-L2-mean.md").read_text(encoding="utf-8")
    assert "| wuu |" in matrix and "| gan |" in matrix


def test_yubao_recipe_with_fbank_baseline(tmp_path):
    run_egs("yubao", "--corpus-dir", fake_corpora.yubao_tree(tmp_path / "scraped"), "--features", "fbank",
            "--out", tmp_path / "exp")
    ret = tmp_path / "exp" / "retrieval"
    for name in ("yubao-seqsim-L0-mean", "yubao-rerank-L0-mean-center", "yubao-pooled-L0-mean"):
        assert (ret / f"{name}.md").is_file() and (ret / f"{name}.png").is_file()
    assert (ret / "layers" / "yubao-pooled-L0-mean-center.tex").is_file()


def test_tw_hokkien_dry_run_compares_every_system(tmp_path, tone_corpus):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                           num_mel_bins=80)
    WhisperEncoder(config).save_pretrained(tmp_path / "whisper")
    demo = tmp_path / "demo"
    train(load_config(None, tiny_train_overrides(tone_corpus) + ["train.max_steps=2"]), demo)
    synth = tmp_path / "synth"
    synth.mkdir()
    for split in ("train", "dev"):
        shutil.copy(tone_corpus[split], synth / f"synth_cuts_{split}.jsonl.gz")
    out = run_egs("tw-hokkien", fake_corpora.hokkien_tree(tmp_path / "tw"), "--whisper-dir", tmp_path / "whisper",
                  "--demo-exp", demo, "--synth-data", synth, "--out", tmp_path / "exp", "--dry-run")
    assert "fine-tuning Whisper-base with CTC on the synthetic corpus" in out.stdout
    table = (tmp_path / "exp" / "dry-run" / "hokkien-to-mandarin.md").read_text(encoding="utf-8")
    for system in ("fbank/pooled-L0-mean", "whisper-base/seqsim-L1-mean-center", "whisper-base-random/",
                   "whisper-base-pad30/seqsim-L2-mean",
                   "synth-demo/pooled-L2-mean", "whisper-base-synth-ctc/"):
        assert f"| {system}" in table, table
