"""Training objectives chosen by config on a tiny imported Whisper: LoRA (peft) with exact resume, merging
and export; the distillation guard; Mandarin-translation targets; the restricted training softmax;
cached frozen encoder states."""

import pytest
import torch
from safetensors.torch import load_file

from speechalign.config import ConfigError, load_config
from speechalign.models.asr import IGNORE
from speechalign.models.experiment import load_experiment
from speechalign.models.export import export, load_hf_export
from speechalign.models.lora import has_lora, merge_lora
from speechalign.train.checkpoint import write_average
from speechalign.train.trainer import Trainer, train
from tests.train.conftest import TRANSLATED, assert_same_weights, straight_and_resumed
from tests.train.conftest import whisper_cfg as _cfg


LORA = ["model.lora.rank=4", "model.lora.dropout=0.0"]


def _batch(trainer):
    return next(iter(trainer.loader))


def test_lora_trains_only_adapters_and_the_ctc_head(parallel_corpus, whisper_pair, tmp_path):
    trainer = Trainer(_cfg(parallel_corpus, whisper_pair, *LORA), tmp_path / "exp")
    trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or n.startswith("ctc.") for n in trained)
    # adapters only in the layers that are not frozen, and in the decoder's feed-forward layers
    assert any("encoder.layers.1." in n for n in trained) and not any("encoder.layers.0." in n for n in trained)
    assert any(n.startswith("decoder.") and "linear1" in n for n in trained)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_lora_resume_is_exact_and_average_merges(parallel_corpus, whisper_pair, tmp_path):
    (straight, _), (a, b) = straight_and_resumed(parallel_corpus, whisper_pair, tmp_path, *LORA)
    assert any("lora_A" in k for k in a)
    assert_same_weights(a, b)
    # averaging merges each checkpoint first: the mean of B @ A, stored in the plain architecture
    avg = load_file(str(write_average(straight, last=2)))
    assert not any("lora_" in k for k in avg)
    merged = []
    for step in ("step-2", "step-4"):
        _, _, model = load_experiment(straight, step)
        assert not has_lora(model)
        merged.append(model.state_dict())
    key = "encoder.encoder.layers.1.fc1.weight"
    assert torch.allclose(avg[key], (merged[0][key] + merged[1][key]) / 2, atol=1e-6)
    _, _, averaged = load_experiment(straight, "avg-last2")
    assert torch.allclose(averaged.state_dict()[key], avg[key])


def test_merged_lora_equals_adapted_model_and_exports_as_hf(parallel_corpus, whisper_pair, tmp_path):
    exp = tmp_path / "exp"
    trainer = Trainer(_cfg(parallel_corpus, whisper_pair, *LORA), exp)
    trainer.train()
    model = trainer.model.eval()
    batch = _batch(trainer)
    with torch.no_grad():
        adapted = model.encode(batch.wav, batch.wav_lens).last
        merged = merge_lora(model).encode(batch.wav, batch.wav_lens).last
    assert not has_lora(model) and torch.allclose(adapted, merged, atol=1e-5)
    assert (adapted - model.encoder.encoder.layers[1].fc1.weight.new_zeros(1)).abs().max() > 0
    encoder, ctc, _ = load_hf_export(export(exp, tmp_path / "hf", "hf"))
    with torch.no_grad():
        exported = encoder(batch.wav, batch.wav_lens).last
    assert torch.allclose(exported, merged, atol=1e-5)


def test_distillation_is_zero_for_the_teacher_and_pulls_a_changed_decoder(parallel_corpus, whisper_pair, tmp_path):
    trainer = Trainer(_cfg(parallel_corpus, whisper_pair, "model.guard.kind=distill", "model.guard.weight=0.5"),
                      tmp_path / "exp")
    (term,) = trainer.terms
    batch = _batch(trainer)
    model = trainer.model.train()
    out = model(batch.wav, batch.wav_lens, batch.targets, batch.texts, batch.translations, keep_attention=True)
    assert float(term(out).detach()) == pytest.approx(0.0, abs=1e-5)   # student == pretrained teacher at the start
    with torch.no_grad():  # a flatter output distribution than the teacher's
        model.decoder.layers.norm.weight.mul_(0.1)
        model.decoder.layers.norm.bias.mul_(0.1)
    out = model(batch.wav, batch.wav_lens, batch.targets, batch.texts, batch.translations, keep_attention=True)
    kl = term(out)
    assert float(kl.detach()) > 1e-2
    kl.backward()
    assert model.decoder.layers.norm.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in term.teacher.parameters())
    trainer.train()
    assert "train_distill" in __import__("yaml").safe_load(
        (tmp_path / "exp" / "checkpoints" / "step-4" / "metrics.yaml").read_text())


def test_translation_targets_train_the_decoder_on_the_mandarin_sentence(parallel_corpus, whisper_pair, tmp_path):
    trainer = Trainer(_cfg(parallel_corpus, whisper_pair, "model.decoder.targets=translation"), tmp_path / "exp")
    batch = _batch(trainer)
    model = trainer.model
    targets = model.attention_targets(batch.targets, batch.texts, batch.translations)
    for text, translation, target in zip(batch.texts, batch.translations, targets):
        if translation is None:
            assert target is None
        else:
            assert model.att_vocab.decode(target) == translation == "".join(
                TRANSLATED["甲乙丙丁戊己".index(c)] for c in text)
    assert any(t is None for t in targets) and any(t is not None for t in targets)
    # the attention loss covers the cuts with a translation only (CTC still sees every cut)
    model.eval()
    with torch.no_grad():
        enc = model.encode(batch.wav, batch.wav_lens)
        out = model.loss(enc, batch.targets, batch.texts, batch.translations)
        keep = [i for i, t in enumerate(targets) if t is not None]
        att, _, _ = model.attention_loss(enc.last[keep], enc.lengths[keep], [targets[i] for i in keep],
                                         len(targets))
    assert float(out["att"]) == pytest.approx(float(att))


def test_restricted_softmax_is_the_full_softmax_without_the_unused_tokens(parallel_corpus, whisper_pair, tmp_path):
    trainer = Trainer(_cfg(parallel_corpus, whisper_pair, "model.decoder.train_vocab=targets",
                           "model.decoder.label_smoothing=0.0"), tmp_path / "exp")
    model = trainer.model.train()
    vocab = model.train_vocab
    batch = _batch(trainer)
    targets = model.attention_targets(batch.targets, batch.texts)
    used = {t for seq in targets for t in seq} | {model.att_eos}
    assert used <= set(vocab.tolist()) and len(vocab) < model.att_vocab_size
    enc = model.encode(batch.wav, batch.wav_lens)
    restricted, _, _ = model.attention_loss(enc.last, enc.lengths, targets)
    model.train_vocab = None
    inp, gold, pad = model.teacher_forcing(targets, "cpu")
    from speechalign.models.encoders import padding_mask

    logits = model.decoder(inp, enc.last, padding_mask(enc.lengths, enc.last.shape[1]), pad)
    outside = torch.ones(model.att_vocab_size, dtype=torch.bool)
    outside[vocab] = False
    full = torch.nn.functional.cross_entropy(logits.masked_fill(outside, float("-inf")).reshape(-1, logits.shape[-1]),
                                             gold.reshape(-1), ignore_index=IGNORE, reduction="sum") / len(targets)
    assert float(restricted.detach()) == pytest.approx(float(full.detach()), rel=1e-5)
    model.set_train_vocab([model.att_eos])
    with pytest.raises(ValueError, match="outside the training vocabulary"):
        model.attention_loss(enc.last, enc.lengths, targets)


@pytest.mark.parametrize("tail", [[], ["model.whisper.tail_seconds=0.5"]], ids=["trim", "tail"])
def test_cached_states_equal_the_frozen_layers_and_train_the_same(parallel_corpus, whisper_pair, tmp_path, tail):
    off = ["data.spec_augment=false", *tail]
    cached = Trainer(_cfg(parallel_corpus, whisper_pair, *off, "model.freeze.cache_states=true"), tmp_path / "a")
    plain = Trainer(_cfg(parallel_corpus, whisper_pair, *off), tmp_path / "b")
    batch = _batch(cached)
    x, lens = cached.cache.batch(batch.ids, batch.wav, batch.wav_lens)
    model = plain.model.eval()
    with torch.no_grad():
        for i in range(len(batch.ids)):
            n = int(batch.wav_lens[i])
            one = model.encode(batch.wav[i : i + 1, :n], batch.wav_lens[i : i + 1])
            assert int(lens[i]) == int(one.lengths[0])
            assert torch.allclose(x[i, : lens[i]], one.hidden_states[1][0], atol=1e-6)
        # from the cached input of layer 1 the loss is the full model's (batched front end: 1e-4 at the edges)
        a = model(x, lens, batch.targets, batch.texts, start_layer=1)["loss"]
        b = model(batch.wav, batch.wav_lens, batch.targets, batch.texts)["loss"]
    assert float(a) == pytest.approx(float(b), rel=1e-3)
    assert cached.cache.hits == 0 and cached.cache.misses == len(batch.ids)
    cached.cache.batch(batch.ids, batch.wav, batch.wav_lens)
    assert cached.cache.hits == len(batch.ids)


def test_cached_states_resume_exactly(parallel_corpus, whisper_pair, tmp_path):
    _, (a, b) = straight_and_resumed(parallel_corpus, whisper_pair, tmp_path, "model.freeze.cache_states=true")
    assert_same_weights(a, b)


@pytest.mark.parametrize("override, message", [
    ("model.guard.kind=ewc", "model.guard.kind"),
    ("model.decoder.targets=mandarin", "model.decoder.targets"),
    ("model.freeze.cache_states=true", "model.freeze.cache_states"),
    ("model.lora.rank=-1", "model.lora.rank"),
])
def test_objective_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_a_translating_decoder_is_decoded_alone_and_scored_with_bleu(parallel_corpus, whisper_pair, tmp_path):
    from speechalign.decode.run import decode, supported_modes

    exp = tmp_path / "exp"
    train(_cfg(parallel_corpus, whisper_pair, "model.decoder.targets=translation"), exp)
    _, _, model = load_experiment(exp)
    assert supported_modes(model) == ["ctc_greedy", "ctc_prefix_beam", "attention_beam"]
    with pytest.raises(ValueError, match="outputs Mandarin translations"):
        decode(exp, [parallel_corpus["dev"]], mode="attention_rescoring", beam=2)
    decode(exp, [parallel_corpus["dev"]], mode="attention_beam", beam=2)
    out = exp / "decode" / "latest"
    bleu = (out / "bleu-par_dev-attention_beam.tsv").read_text(encoding="utf-8")
    assert "overall" in bleu and "not ASR-only" in (out / "cer-par_dev-attention_beam.md").read_text(encoding="utf-8")
    # the CER beside BLEU is against the translation: the references in recogs are the translated sentences
    recogs = (out / "recogs-par_dev-attention_beam.txt").read_text(encoding="utf-8").splitlines()[2:]
    refs = {line.split("\t")[2] for line in recogs if line}
    assert refs and all(set(r) <= set(TRANSLATED) for r in refs)


def test_a_restricted_decoder_decodes_within_its_training_vocabulary(parallel_corpus, whisper_pair, tmp_path):
    from speechalign.decode.attention import attention_beam
    from speechalign.decode.run import decode

    exp = tmp_path / "exp"
    train(_cfg(parallel_corpus, whisper_pair, "model.decoder.train_vocab=targets"), exp)
    ids = [int(x) for x in (exp / "att_train_vocab.txt").read_text().split()]
    _, _, model = load_experiment(exp)
    assert model.train_vocab.tolist() == sorted(ids) and int(model.decoder.allowed.sum()) == len(ids)
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(3):   # random memories: an unrestricted decoder would emit unseen tokens here
            out = attention_beam(model, torch.randn(40, 64) * 3, beam=3)
            assert set(out) <= set(ids)
        # validation scores targets with unseen tokens (left out of the loss) instead of failing
        enc = model.encode(torch.randn(1, 16000) * 0.1, torch.tensor([16000]))
        loss, _, _ = model.attention_loss(enc.last, enc.lengths, [[5, 6, max(set(range(model.att_vocab_size)) - set(ids))]])
    assert torch.isfinite(loss)
    scorer = decode(exp, [parallel_corpus["dev"]], mode="attention_beam", beam=2)["par_dev"]
    assert scorer.overall().utts == 12
    # rescoring pads hypotheses of unequal length with token 0, which this decoder cannot output: the scores
    # must stay finite and distinct (a NaN made every hypothesis tie, so rescoring returned CTC's best)
    from speechalign.decode.attention import attention_scores

    assert 0 not in ids
    short, long = [ids[1]], [ids[1], ids[2], ids[3]]
    scores = attention_scores(model, torch.randn(40, 64), [short, long])
    assert torch.isfinite(scores).all() and scores[0] != scores[1]


def test_interpolation_towards_the_pretrained_weights(parallel_corpus, whisper_pair, tmp_path):
    from speechalign.cli import main
    from speechalign.models.asr import build_model
    from speechalign.train.wise import interpolate

    cfg = _cfg(parallel_corpus, whisper_pair, steps=2)
    train(cfg, tmp_path / "exp")
    exp = tmp_path / "exp"
    _, tokenizer, tuned = load_experiment(exp, "step-2")
    start = build_model(cfg, len(tokenizer)).state_dict()
    tuned = tuned.state_dict()
    assert main(["interpolate", "--exp-dir", str(exp), "--checkpoint", "step-2", "--alpha", "0.25"]) == 0
    _, _, half = load_experiment(exp, "wise-decoder-0.25")
    half = half.state_dict()
    moved = [k for k in tuned if k.startswith("decoder.") and not torch.equal(tuned[k], start[k])]
    assert moved   # two steps changed the decoder, so the interpolation is visible
    for k in moved:
        torch.testing.assert_close(half[k], 0.25 * tuned[k] + 0.75 * start[k])
    assert all(torch.equal(half[k], tuned[k]) for k in tuned if k.startswith(("encoder.", "ctc.")))
    both, n = interpolate(tuned, start, 0.0, ["encoder", "decoder"])
    assert n > len(moved)
    assert all(torch.equal(both[k], start[k].to(both[k].dtype)) for k in tuned if k.startswith(("encoder.", "decoder.")))
    with pytest.raises(ValueError, match="alpha must be in"):
        interpolate(tuned, start, 1.5, ["decoder"])
    with pytest.raises(ValueError, match="not among"):
        interpolate(tuned, start, 0.5, ["ctc"])


PROMPTED = ["model.decoder.prompt=variety", "model.decoder.plain_varieties=[A]", "model.decoder.label_smoothing=0.0"]


def test_variety_prompt_is_an_input_per_utterance_and_batches_like_one_by_one(parallel_corpus, whisper_pair, tmp_path):
    trainer = Trainer(_cfg(parallel_corpus, whisper_pair, *PROMPTED), tmp_path / "exp")
    model = trainer.model.eval()
    vocab = model.att_vocab
    plain, prompted = model.prefixes(["A", "B", "unknown"], 3)[:2], model.prefixes(["B"], 1)[0]
    assert plain == [vocab.prefix, vocab.prompted("B")] and model.prefixes(["unknown"], 1) == [vocab.prefix]
    assert prompted[0] == vocab.tokenizer.token_to_id("<|startofprev|>") and prompted[-4:] == vocab.prefix
    assert model.prefixes(None, 2) == [vocab.prefix] * 2
    batch = _batch(trainer)
    targets = model.attention_targets(batch.targets, batch.texts)
    dialects = ["B" if i % 2 else "A" for i in range(len(targets))]   # both prefix lengths in one batch
    assert len(targets) > 1
    prefixes = model.prefixes(dialects, len(targets))
    # gold is aligned after each row's own prefix: the label positions hold the target then <|endoftext|>
    inp, gold, pad = model.teacher_forcing(targets, "cpu", prefixes)
    for row, (p, t) in enumerate(zip(prefixes, targets)):
        assert inp[row, : len(p) + len(t)].tolist() == p + t and not pad[row, : len(p) + len(t)].any()
        assert gold[row, len(p) - 1 : len(p) + len(t)].tolist() == t + [model.att_eos]
        assert (gold[row, : len(p) - 1] == IGNORE).all() and (gold[row, len(p) + len(t):] == IGNORE).all()
    with torch.no_grad():
        enc = model.encode(batch.wav, batch.wav_lens)
        batched = float(model.loss(enc, batch.targets, batch.texts, dialects=dialects)["att"])
        alone = sum(float(model.attention_loss(enc.last[i : i + 1, : n], enc.lengths[i : i + 1], [targets[i]], 1,
                                               [prefixes[i]])[0]) for i, n in enumerate(enc.lengths.tolist()))
        unprompted = float(model.loss(enc, batch.targets, batch.texts)["att"])
    assert batched == pytest.approx(alone / len(targets), rel=1e-4)
    assert abs(batched - unprompted) > 1e-4   # the label reaches the decoder


def test_variety_prompt_reaches_training_validation_and_decoding(parallel_corpus, whisper_pair, tmp_path, monkeypatch):
    from speechalign.decode.run import decode
    from speechalign.models.asr import ASRModel

    seen: list[tuple[str, ...]] = []
    original = ASRModel.prefixes

    def recording(self, dialects, n, timed=None):
        seen.append(tuple(dialects) if dialects is not None else None)
        return original(self, dialects, n, timed)

    monkeypatch.setattr(ASRModel, "prefixes", recording)
    exp = tmp_path / "exp"
    train(_cfg(parallel_corpus, whisper_pair, *PROMPTED, "train.valid_every=2", steps=2), exp)
    assert seen and all(labels is not None and set(labels) <= {"A", "B"} for labels in seen)
    assert any("B" in labels for labels in seen)
    seen.clear()
    results = decode(exp, [parallel_corpus["dev"]], mode="attention_beam", beam=2)
    assert seen and all(labels is not None for labels in seen) and any("B" in labels for labels in seen)
    report = (exp / "decode" / "latest" / "cer-par_dev-attention_beam.md").read_text()
    assert "prompted with the cut's variety label" in report and results
    seen.clear()
    decode(exp, [parallel_corpus["dev"]], mode="joint_beam", beam=2)
    assert any("B" in labels for labels in seen)


def test_variety_prompt_needs_whisper_decoder():
    with pytest.raises(ConfigError, match="model.decoder.prompt=variety"):
        load_config(None, ["model.decoder.prompt=variety"])
    with pytest.raises(ConfigError, match="model.decoder.prompt"):
        load_config(None, ["model.decoder.prompt=dialect"])


TEACHER = ["model.guard.kind=padded_teacher", "model.guard.weight=0.5"]


def test_the_padded_teacher_cache_equals_a_live_teacher_on_the_30_s_memory(parallel_corpus, whisper_pair, tmp_path):
    from speechalign.models.asr import build_decoder
    from speechalign.models.encoders import WhisperSpeechEncoder, load_pretrained_whisper_encoder

    cfg = _cfg(parallel_corpus, whisper_pair, *TEACHER, "model.decoder.train_vocab=targets")
    trainer = Trainer(cfg, tmp_path / "exp")
    (term,) = trainer.terms
    batch, model = _batch(trainer), trainer.model.eval()
    out = model(batch.wav, batch.wav_lens, batch.targets, batch.texts, keep_attention=True)
    io = out["attention"]
    cached = term(out, batch)
    assert sorted(term.cache) == sorted(batch.ids) and torch.equal(term(out, batch), cached)
    for i, cut in enumerate(batch.ids):   # the float16 cache is read back as a distribution: the KL is >= 0
        rows = term.teacher_log_probs(cut, batch.wav[i], int(batch.wav_lens[i]), torch.zeros(0), torch.zeros(0), None)
        torch.testing.assert_close(rows.exp().sum(-1), torch.ones(len(rows)), rtol=0, atol=1e-5)
    # live and batched: pretrained Whisper's encoder reading each utterance padded to 30 s, its decoder
    live_encoder = WhisperSpeechEncoder(load_pretrained_whisper_encoder(str(whisper_pair[0])), "pad30").eval()
    with torch.no_grad():
        memory = live_encoder(batch.wav, batch.wav_lens).last
        assert memory.shape[1] == 1500
        teacher = build_decoder(cfg).eval()(io["tokens"], memory, torch.zeros(memory.shape[:2], dtype=torch.bool),
                                            io["token_pad"], vocab=io["vocab"])
    mask = io["gold"] != IGNORE
    kl = torch.nn.functional.kl_div(io["logits"].detach()[mask].log_softmax(-1), teacher[mask].log_softmax(-1),
                                    log_target=True, reduction="sum") / len(batch.ids)
    assert float(kl) > 1e-3                                   # the student reads the trimmed memory
    torch.testing.assert_close(cached, kl, rtol=2e-3, atol=1e-4)   # the cache is float16
    kl_grad = term({**out}, batch)
    kl_grad.backward()
    assert model.decoder.layers.norm.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in term.parameters())


def test_padded_teacher_resumes_exactly_and_needs_whisper(parallel_corpus, whisper_pair, tmp_path):
    (straight, _), (a, b) = straight_and_resumed(parallel_corpus, whisper_pair, tmp_path, *TEACHER)
    assert_same_weights(a, b)
    assert "train_padded_teacher" in __import__("yaml").safe_load(
        (straight / "checkpoints" / "step-4" / "metrics.yaml").read_text())
    with pytest.raises(ConfigError, match="padded_teacher: the teacher is pretrained Whisper"):
        load_config(None, ["model.decoder.pretrained=x", *TEACHER])
    with pytest.raises(ConfigError, match="padded_teacher caches per utterance"):
        load_config(None, ["model.encoder=whisper", "model.decoder.pretrained=x", "data.pack.window=30", *TEACHER])
