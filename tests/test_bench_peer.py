"""bench/peer_hf_whisper.py (the transformers peer) and bench/train_throughput.py on a tiny imported Whisper
(Whisper's real id layout, so Chinese text tokenizes) and fake cuts: dry runs write what the later stages
read, and the encoder dir loads in `speechalign embed --encoder-dir`."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("ctranslate2", reason="pip ctranslate2 is needed to produce the tiny imported Whisper")

from speechalign.cli import main as cli  # noqa: E402
from speechalign.models.ct2_import import import_whisper  # noqa: E402
from tests.tiny_whisper import convert_to_ct2, make_tiny_whisper  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    saved = {n: sys.modules.get(n) for n in ("peer_hf_whisper", "train_profile", "train_throughput")}
    try:
        yield _load("peer_hf_whisper"), _load("train_throughput")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    """fetch-pretrained's layout for a tiny random Whisper: encoder, decoder, tokenizer, ct2/ and hf/."""
    root = tmp_path_factory.mktemp("tiny_whisper")
    ct2 = convert_to_ct2(make_tiny_whisper(root, gain=3.0, whisper_vocab=True), root / "ct2")
    out = import_whisper(ct2, root / "imported")
    assert (out / "hf" / "model.safetensors").is_file()
    return out


def test_collator_pads_labels_with_minus_100_and_drops_the_start_token(bench, whisper_dir, tone_corpus):
    peer, _ = bench
    model, processor = peer.load_peer(whisper_dir / "hf")
    from speechalign.data.manifest import load_cuts

    cuts = list(load_cuts(tone_corpus["train"]))[:3]
    items = [peer.PeerDataset(cuts, processor)[i] for i in range(3)]
    batch = peer.DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)(items + [None])
    assert batch["input_features"].shape == (3, 80, 3000)                       # 30-s windows
    labels = batch["labels"]
    lens = [len(i["labels"]) - 1 for i in items]                                # <|startoftranscript|> dropped
    zh, transcribe, notimestamps = (processor.tokenizer.convert_tokens_to_ids(t)
                                    for t in ("<|zh|>", "<|transcribe|>", "<|notimestamps|>"))
    for row, n in zip(labels.tolist(), lens):
        assert row[:3] == [zh, transcribe, notimestamps] and row[n - 1] == model.config.eos_token_id
        assert all(x == -100 for x in row[n:])
    assert float(batch["audio_seconds"]) == pytest.approx(sum(c.duration for c in cuts), abs=1e-3)


def test_peer_dry_run_writes_model_hypotheses_and_an_embeddable_encoder(bench, whisper_dir, tone_corpus, tmp_path):
    from transformers import WhisperForConditionalGeneration

    peer, _ = bench
    out = tmp_path / "peer"
    summary = peer.main(["--whisper-hf", str(whisper_dir / "hf"), "--train", str(tone_corpus["train"]),
                         "--dev", str(tone_corpus["dev"]), "--eval", str(tone_corpus["dev"]), "--out", str(out),
                         "--batch-size", "2", "--grad-accum", "2", "--threads", "1", "--dry-run"])
    assert summary["steps"] == 2 and summary["stopped_by"] == "max_steps" and summary["utterances_trained"] == 8
    assert summary["audio_seconds_trained"] > 0 and summary["dev_loss"] > 0
    # the model, in safetensors, loads with plain transformers
    assert (out / "model/model.safetensors").is_file()
    trained = WhisperForConditionalGeneration.from_pretrained(out / "model")
    assert trained.generation_config.language == "zh" and trained.generation_config.task == "transcribe"
    # hypotheses: id<TAB>text for every dev cut, scored with speechalign's normalization
    ids = {line.split("\t")[0] for line in (out / "decode/hyp-tones_dev.txt").read_text(encoding="utf-8").splitlines()}
    assert len(ids) == 8
    assert (out / "decode/cer-tones_dev-score.tsv").is_file()
    assert cli(["score", "--ref", str(out / "decode/ref-tones_dev.txt"), "--hyp", str(out / "decode/hyp-tones_dev.txt"),
                "--groups", str(out / "decode/groups-tones_dev.txt"), "--out-dir", str(tmp_path / "score"),
                "--name", "tones_dev"]) == 0
    rows = (tmp_path / "score/cer-tones_dev-score.tsv").read_text().splitlines()
    assert {r.split("\t")[0] for r in rows[1:]} >= {"A", "B", "overall"}
    # settings that differ from the guide: in settings.md and at the top of the log
    settings = (out / "settings.md").read_text(encoding="utf-8")
    assert "| time budget |" not in settings   # a step budget, as the guide's: no row
    for row in ("| device / precision | CUDA GPU, fp16=True | CPU, fp32 |", "| max_steps | 5000 |",
                "| gradient_checkpointing | True | False |", "| dry run |"):
        assert row in settings, row
    assert "settings that differ from the fine-tune Whisper guide" in (out / "peer.log").read_text(encoding="utf-8")
    # the encoder dir: a transformers WhisperEncoder dir that embed --encoder-dir loads, with the trained weights
    config = json.loads((out / "encoder/config.json").read_text())
    assert config["architectures"] == ["WhisperEncoder"]
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    encoder = WhisperEncoder.from_pretrained(out / "encoder")
    assert all(torch.equal(v, trained.model.encoder.state_dict()[k]) for k, v in encoder.state_dict().items())
    assert cli(["embed", "--cuts", str(tone_corpus["dev"]), "--out", str(tmp_path / "emb"), "--encoder-dir",
                str(out / "encoder"), "--length-mode", "pad30"]) == 0
    assert (tmp_path / "emb/info.yaml").is_file()


def test_time_budget_stops_training_and_reports_the_steps(bench, whisper_dir, tone_corpus, tmp_path, capsys):
    peer, _ = bench
    summary = peer.main(["--whisper-hf", str(whisper_dir / "hf"), "--train", str(tone_corpus["train"]),
                         "--out", str(tmp_path / "p"), "--batch-size", "2", "--grad-accum", "1", "--threads", "1",
                         "--max-steps", "50", "--max-minutes", "1e-6"])
    assert summary["steps"] == 1 and summary["stopped_by"] == "time budget"
    assert "steps reached: 1 of 50" in capsys.readouterr().out
    settings = (tmp_path / "p/settings.md").read_text(encoding="utf-8")
    assert "| max_steps | 5000 | 50 |" in settings and "| time budget | none (max_steps only) | 1e-06 min" in settings


def test_throughput_dry_configuration(bench, whisper_dir, tone_corpus, tmp_path):
    _, throughput = bench
    out = tmp_path / "throughput.md"
    rows = throughput.main(["--config", str(ROOT / "recipes/real_whisper_base_hybrid.yaml"),
                            "--cuts", str(tone_corpus["train"]), "--set", f"model.whisper.pretrained={whisper_dir}",
                            "--set", f"model.decoder.pretrained={whisper_dir}", "--set", "train.valid_retrieval_layers=[]",
                            "--steps", "1", "--warmup", "0", "--max-duration", "4", "--threads", "1",
                            "--ablate", "pad30", "frozen", "ctc", "packed", "--out", str(out)])
    names = [r.name for r in rows]
    assert names[0] == "speechalign recipe" and names[-1].startswith("transformers peer") and len(rows) == 6
    assert all(r.throughput > 0 and r.rss_peak > 0 and len(r.step_s) == 1 for r in rows)
    # the same batches for every row but the packed one: same audio and utterances per step
    same = [r for r in rows if not r.name.startswith("speechalign, packed")]
    assert len({round(r.audio_s[0], 3) for r in same}) == 1 and len({r.utts[0] for r in same}) == 1
    packed = rows[4]
    assert packed.name == "speechalign, packed 30-s windows (data.pack, pad30)"
    # 2.5 x 4 s of audio (lhotse ends a batch one cut over), in a few windows of many cuts
    assert 8 < packed.audio_s[0] <= 11 and packed.utts[0] < same[0].utts[0]
    text = out.read_text()
    assert "ratio (speechalign recipe / transformers peer, audio-s per wall-s): " in text
    assert "| speechalign, Whisper 30-s padding (length_mode pad30) |" in text
    assert "| speechalign, nothing frozen |" in text and "| speechalign, no CTC loss (ctc_weight 0) |" in text


def test_every_throughput_ablation_is_a_valid_override_of_the_trimmed_recipe(bench):
    from speechalign.config import load_config

    _, throughput = bench
    for name, (label, extra) in throughput.ABLATIONS.items():
        cfg = load_config(ROOT / "recipes/real_whisper_base_hybrid.yaml", extra)
        assert label and cfg.model.whisper.length_mode == ("trim" if name in ("frozen", "ctc") else "pad30")
