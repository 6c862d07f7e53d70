import subprocess
import sys

import torch
from safetensors.torch import load_file

from tests.conftest import tiny_train_overrides


def test_two_process_gloo_training_on_a_shar_corpus_with_workers_stays_in_sync(tone_corpus, tmp_path):
    from speechalign.data.shar import export_shar

    exp = tmp_path / "ddp"
    shar = export_shar([tone_corpus["train"]], tmp_path / "shar", shard_size=10)
    overrides = tiny_train_overrides(tone_corpus) + [f"data.train=[{{shar: {shar}}}]", "data.num_workers=1",
                                                     "train.max_steps=4", "train.valid_every=100", "train.num_threads=1"]
    sets = [a for o in overrides for a in ("--set", o)]
    (tmp_path / "cfg.yaml").write_text("{}\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "speechalign.cli", "train", "--config", str(tmp_path / "cfg.yaml"), "--exp-dir", str(exp), *sets]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-8000:]
    assert "weights in sync across 2 processes" in out.stderr
    state = torch.load(exp / "checkpoints" / "step-4" / "state.pt", weights_only=True)
    assert len(state["per_rank"]) == 2
    assert state["per_rank"][0]["sampler"]["rank"] == 0 and state["per_rank"][1]["sampler"]["rank"] == 1
    assert load_file(str(exp / "checkpoints" / "step-4" / "model.safetensors"))
