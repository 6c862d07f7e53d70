"""Training on packed 30-s windows (data.pack, whisper length_mode=pad30) on a tiny imported Whisper: the loss
of a window, exact resume with a loader worker, and evaluation of the experiment one utterance per window."""

import shutil

import numpy as np
import pytest
import yaml
import soundfile as sf
import torch
from lhotse import CutSet

from speechalign.data.dataset import SpeechDataset
from speechalign.data.manifest import cut_meta, load_cuts
from speechalign.data.packing import WindowPacker
from speechalign.decode.run import decode
from speechalign.retrieval.embed import EmbeddingStore, build_source, embed
from speechalign.train.trainer import Trainer, train
from tests.train.conftest import assert_same_weights, straight_and_resumed, whisper_cfg

PACK = ["data.pack={window: 30, gap: 0.3, single_share: 0.25}", "model.whisper.length_mode=pad30"]


def test_windows_hold_no_more_target_tokens_than_the_decoder_has_positions(parallel_corpus, whisper_pair, tmp_path):
    trainer = Trainer(whisper_cfg(parallel_corpus, whisper_pair, *PACK), tmp_path / "exp")
    packer, model = trainer.loader.dataset.packer, trainer.model
    assert packer.budget.limit == model.decoder.max_len - len(model.att_prefix) - 1 == 59
    windows = packer.plan(list(load_cuts(parallel_corpus["train"])))
    assert len(windows) > 2 and all(sum(len(model.att_vocab.encode(c.supervisions[0].text)) for c in w.cuts) <= 59
                                    for w in windows)


def test_a_packed_batch_holds_max_duration_of_audio_not_of_padding(parallel_corpus, whisper_pair, tmp_path):
    # lhotse's default constraint counts the longest cut times their number: 55 of 100 s in the first packed run
    cfg = whisper_cfg(parallel_corpus, whisper_pair, *PACK, "data.max_duration=12")
    batches = [list(cuts) for cuts in Trainer(cfg, tmp_path / "exp").sampler]
    assert batches and all(10.0 <= sum(c.duration for c in b) <= 12.0 + 0.75 for b in batches)
    assert any(max(c.duration for c in b) * len(b) > 12.75 for b in batches)   # more than padding would allow


def test_windows_of_one_variety_come_from_batches_of_one_variety(parallel_corpus, whisper_pair, tmp_path):
    cfg = whisper_cfg(parallel_corpus, whisper_pair, "data.pack={window: 30, gap: 0.3, group: variety}",
                      "model.whisper.length_mode=pad30", "data.max_duration=4")
    batches = [[cut_meta(c)["dialect"] for c in cuts] for cuts in Trainer(cfg, tmp_path / "exp").sampler]
    assert len(batches) >= 4 and {d for b in batches for d in b} == {"A", "B"}
    assert all(len(set(b)) == 1 for b in batches[:-2])   # only the epoch's two leftover runs may share a batch


def test_packed_window_loss_equals_its_audio_and_text_joined_by_hand(parallel_corpus, whisper_pair, tmp_path):
    trainer = Trainer(whisper_cfg(parallel_corpus, whisper_pair, *PACK), tmp_path / "exp")
    model = trainer.model.eval()
    cuts = list(load_cuts(parallel_corpus["train"]))[:3]
    batch = SpeechDataset(trainer.tokenizer, packer=WindowPacker(30.0, 0.3))[CutSet.from_cuts(cuts)]
    assert len(batch.ids) == 1
    gap = np.zeros(4800, dtype=np.float32)
    parts = [sf.read(c.recording.sources[0].source, dtype="float32")[0] for c in cuts]
    wav = np.concatenate([parts[0], gap, parts[1], gap, parts[2]])
    text = "".join(c.supervisions[0].text for c in cuts)
    with torch.no_grad():
        packed = model(batch.wav, batch.wav_lens, batch.targets, batch.parts)
        by_hand = model(torch.from_numpy(wav)[None], torch.tensor([len(wav)]), [trainer.tokenizer.encode(text)], [text])
        alone = model(torch.from_numpy(parts[0])[None], torch.tensor([len(parts[0])]),
                      [trainer.tokenizer.encode(cuts[0].supervisions[0].text)], [cuts[0].supervisions[0].text])
    for k in ("ctc", "att", "loss"):
        torch.testing.assert_close(packed[k], by_hand[k], rtol=1e-5, atol=1e-5)
    assert packed["att"] > alone["att"]    # three sentences of targets, not one


@pytest.fixture(scope="module")
def whisper_pair_timestamps(tmp_path_factory, whisper_pair):
    """The tiny pair, its decoder's vocabulary with Whisper's timestamp tokens."""
    from tests.train.conftest import make_whisper_like_dir

    return whisper_pair[0], make_whisper_like_dir(tmp_path_factory.mktemp("timestamps"), 64, timestamps=True)


def test_a_timestamped_window_learns_whisper_s_long_form_target(parallel_corpus, whisper_pair_timestamps, tmp_path):
    cfg = whisper_cfg(parallel_corpus, whisper_pair_timestamps,
                      "data.pack={window: 30, gap: 0.3, timestamp_share: 1.0}", "model.whisper.length_mode=pad30",
                      "model.decoder.train_vocab=targets")
    trainer = Trainer(cfg, tmp_path / "exp")
    model, vocab = trainer.model.eval(), trainer.model.att_vocab
    ts = {vocab.tokenizer.token_to_id(f"<|{i * 0.02:.2f}|>") for i in range(1501)}
    assert ts <= set(model.train_vocab.tolist())          # the training softmax can spell every timestamp
    cuts = list(load_cuts(parallel_corpus["train"]))[:2]
    packer = WindowPacker(30.0, 0.3, timestamp_share=1.0)
    batch = SpeechDataset(trainer.tokenizer, packer=packer)[CutSet.from_cuts(cuts)]
    a, b = (c.supervisions[0].text for c in cuts)
    da, db = (c.duration for c in cuts)
    tok = lambda t: vocab.tokenizer.token_to_id(f"<|{round(t / 0.02) * 0.02:.2f}|>")
    target = [tok(0.0), *vocab.encode(a), tok(da), tok(da + 0.3), *vocab.encode(b), tok(da + 0.3 + db)]
    assert model.attention_targets(batch.targets, batch.parts, spans=batch.spans) == [target]
    prefix = model.prefixes(None, 1, [True])[0]
    assert prefix == model.att_prefix[:-1] and vocab.tokenizer.id_to_token(model.att_prefix[-1]) == "<|notimestamps|>"
    with torch.no_grad():
        out = model(batch.wav, batch.wav_lens, batch.targets, batch.parts, spans=batch.spans)
        enc = model.encode(batch.wav, batch.wav_lens)
        by_hand, _, _ = model.attention_loss(enc.last, enc.lengths, [target], 1, [prefix])
        plain = model(batch.wav, batch.wav_lens, batch.targets, batch.parts)
    torch.testing.assert_close(out["att"], by_hand)
    assert not torch.allclose(out["att"], plain["att"])   # the timestamps are in the loss, not dropped


def test_the_trainer_passes_a_window_s_timestamps_to_the_loss(parallel_corpus, whisper_pair_timestamps, tmp_path):
    cfg = whisper_cfg(parallel_corpus, whisper_pair_timestamps, "data.spec_augment=false",
                      "data.pack={window: 30, gap: 0.3, timestamp_share: 1.0}", "model.whisper.length_mode=pad30")
    trainer = Trainer(cfg, tmp_path / "exp")
    batch = next(iter(trainer.loader))
    assert batch.spans and all(s is not None for s in batch.spans)
    with torch.no_grad():
        timed = trainer.model(batch.wav, batch.wav_lens, batch.targets, batch.parts, spans=batch.spans)["att"]
    acc = {"finite": True, "audio": 0.0}
    trainer._micro_step(batch, acc)
    assert acc["att"] == pytest.approx(float(timed), rel=1e-5)


def test_packed_training_resumes_exactly_with_a_loader_worker(parallel_corpus, whisper_pair, tmp_path):
    extra = [*PACK, "data.num_workers=1"]
    (straight, exp), (a, b) = straight_and_resumed(parallel_corpus, whisper_pair, tmp_path, *extra)
    assert_same_weights(a, b)
    # The audio trained on (and the training time) of a resumed run count both of its parts.
    audio = [yaml.safe_load((d / "checkpoints" / "step-4" / "metrics.yaml").read_text())["train_audio_s"]
             for d in (straight, exp)]
    half = yaml.safe_load((exp / "checkpoints" / "step-2" / "metrics.yaml").read_text())["train_audio_s"]
    assert audio[0] == pytest.approx(audio[1], abs=0.2) and 0 < half < audio[1]


@pytest.fixture(scope="module")
def packed_exp(parallel_corpus, whisper_pair, tmp_path_factory):
    exp = tmp_path_factory.mktemp("packed")
    train(whisper_cfg(parallel_corpus, whisper_pair, *PACK, steps=2), exp)
    return exp


def test_a_packed_experiment_embeds_one_utterance_per_window_sliced_to_its_frames(packed_exp, parallel_corpus,
                                                                                 tmp_path):
    encoder, source = build_source(exp_dir=packed_exp)
    assert encoder.length_mode == "pad30"          # from the experiment's config, no flag
    batched = EmbeddingStore.open(embed([parallel_corpus["dev"]], tmp_path / "b", encoder, source, frames=True))
    alone = EmbeddingStore.open(embed([parallel_corpus["dev"]], tmp_path / "a", encoder, source, frames=True,
                                      max_duration=0.01))
    cuts = list(load_cuts(parallel_corpus["dev"]))
    for layer in (1, 2):
        for x, y, cut in zip(batched.frames(layer), alone.frames(layer), cuts):
            assert len(x) == round(cut.duration * 50)      # the utterance's own frames, not the window's 1,500
            np.testing.assert_allclose(x, y, atol=2e-3)    # float16 frame store


def test_a_packed_experiment_read_out_on_trimmed_input_is_a_recorded_override(packed_exp, parallel_corpus,
                                                                              tmp_path):
    trained, source = build_source(exp_dir=packed_exp)
    assert source["length_mode"] == "pad30" and "trained_length_mode" not in source
    probe, source = build_source(exp_dir=packed_exp, length_mode="trim")
    assert probe.length_mode == "trim" and source == {"exp_dir": str(packed_exp), "checkpoint": "latest",
                                                      "length_mode": "trim", "trained_length_mode": "pad30",
                                                      "objective": "ASR-only"}
    stores = {}
    for name, encoder, src in (("pad30", trained, build_source(exp_dir=packed_exp)[1]), ("trim", probe, source)):
        stores[name] = EmbeddingStore.open(embed([parallel_corpus["dev"]], tmp_path / name, encoder, src))
    assert stores["trim"].info["source"]["trained_length_mode"] == "pad30"
    # the random-init baseline of the same experiment takes the override too, not silently its trained mode
    rand, rand_source = build_source(exp_dir=packed_exp, random_init=True, length_mode="trim")
    assert rand.length_mode == "trim" and rand_source["trained_length_mode"] == "pad30"
    # the same weights read the same frames, but without 30 s of padding to attend to
    assert not np.allclose(stores["trim"].pooled(2), stores["pad30"].pooled(2), atol=1e-3)


def test_a_read_out_probe_is_validated_by_the_encoder_it_builds(packed_exp, tmp_path):
    # the same weights, saved as a trimmed run with a silence tail: pad30 has no room for one
    tail_exp = tmp_path / "tail"
    shutil.copytree(packed_exp, tail_exp)
    cfg = yaml.safe_load((tail_exp / "config.yaml").read_text())
    cfg["model"]["whisper"].update(length_mode="trim", tail_seconds=0.5)
    (tail_exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    encoder, source = build_source(exp_dir=tail_exp)
    assert encoder.length_mode == "trim" and encoder.tail_frames == 25 and source["length_mode"] == "trim"
    for random_init in (False, True):
        with pytest.raises(ValueError, match=r"--length-mode pad30 cannot read .*tail_seconds"):
            build_source(exp_dir=tail_exp, length_mode="pad30", random_init=random_init)


def test_a_packed_experiment_decodes_in_its_format(packed_exp, parallel_corpus):
    for mode in ("ctc_greedy", "attention_beam", "joint_beam"):   # joint_beam: CTC over the utterance's frames
        scorer = decode(packed_exp, [parallel_corpus["dev"]], mode=mode, beam=2)["par_dev"]
        assert scorer.overall().utts == 12


def test_a_window_s_attention_target_is_its_cuts_tokens_one_after_another():
    from types import SimpleNamespace

    from speechalign.models.asr import ASRModel

    class MergingBpe:   # like Whisper's byte-level BPE, it has one token for 甲乙 that neither cut alone uses
        def encode(self, text):
            return [100] if text == "甲乙" else [ord(c) for c in text]

    model = SimpleNamespace(att_targets="transcript", att_vocab=MergingBpe())
    targets = ASRModel.attention_targets(model, [[], []], [["甲", "乙"], "甲乙"])
    assert targets == [[ord("甲"), ord("乙")], [100]]


WINDOW_TEACHER = [*PACK, "data.pack.apart=[A]", "model.guard.kind=window_teacher", "model.guard.weight=1.0"]


def test_the_window_teacher_is_pretrained_whisper_on_the_same_window_and_reads_only_its_varieties(
        parallel_corpus, whisper_pair, tmp_path):
    trainer = Trainer(whisper_cfg(parallel_corpus, whisper_pair, *WINDOW_TEACHER, "model.guard.varieties=[A]"),
                      tmp_path / "exp")
    (term,) = trainer.terms
    batch = next(iter(trainer.loader))
    assert {"A", "B"} <= set(batch.dialects)   # windows of A apart from the rest, both in the batch
    model = trainer.model.eval()
    out = model(batch.wav, batch.wav_lens, batch.targets, batch.parts, keep_attention=True)
    assert float(term(out, batch).detach()) == pytest.approx(0.0, abs=1e-5)   # the student starts as the teacher
    with torch.no_grad():   # a student that has moved (the teacher still reads pretrained Whisper)
        model.decoder.layers.norm.weight.mul_(0.1)
        model.decoder.layers.norm.bias.mul_(0.1)
    out = model(batch.wav, batch.wav_lens, batch.targets, batch.parts, keep_attention=True)
    only_a = term(out, batch)
    term.varieties = ("B",)
    only_b = term(out, batch)
    term.varieties = ()
    every = term(out, batch)
    assert float(only_a.detach()) > 1e-3 and float(only_b.detach()) > 1e-3
    torch.testing.assert_close(only_a + only_b, every)   # each row once, over the same batch size
    only_a.backward()
    assert model.encoder.encoder.layers[1].fc2.weight.grad.abs().sum() > 0   # it holds the encoder too
    assert all(p.grad is None for p in term.parameters())
    term.varieties = ("C",)
    assert term(out, batch) is None


def test_a_window_teacher_run_logs_its_term_and_its_config_errors_name_the_key(parallel_corpus, whisper_pair,
                                                                                  tmp_path):
    from speechalign.config import ConfigError, load_config

    trainer = Trainer(whisper_cfg(parallel_corpus, whisper_pair, *WINDOW_TEACHER, "model.guard.varieties=[A]"),
                      tmp_path / "exp")
    trainer.train()
    metrics = yaml.safe_load((tmp_path / "exp" / "checkpoints" / "step-4" / "metrics.yaml").read_text())
    assert "train_window_teacher" in metrics
    (term,) = trainer.terms
    batch = next(iter(trainer.loader))
    out = trainer.model.eval()(batch.wav, batch.wav_lens, batch.targets, batch.parts, keep_attention=True)
    # the student has moved, the teacher has not (a teacher sharing the weights gives ~1e-14, float noise)
    assert float(term(out, batch).detach()) > 1e-8
    base = ["model.encoder=whisper", "model.decoder.pretrained=x", "model.guard.kind=window_teacher"]
    with pytest.raises(ConfigError, match="window_teacher: the teacher reads the student's own input"):
        load_config(None, base)
    with pytest.raises(ConfigError, match=r"so \['Mandarin'\] would never be guarded; add them to data.pack.apart"):
        load_config(None, [*base, *PACK, "model.guard.varieties=[Mandarin]"])
    with pytest.raises(ConfigError, match="window_teacher: the teacher reads the waveforms"):
        load_config(None, [*base, "model.whisper.length_mode=pad30", "data.features=loader"])
