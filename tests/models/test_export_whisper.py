"""speechalign export --format hf of a fine-tuned Whisper (Whisper encoder + Whisper's pretrained decoder): a
whole transformers WhisperForConditionalGeneration whose greedy generate is speechalign's greedy attention
decode, which the transformers pipeline and CTranslate2's converter + faster-whisper run; the CTC head, its
tokenizer and the model card beside it. Tiny random models, offline."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from speechalign.cli import main
from speechalign.config import load_config, save_config
from speechalign.decode.attention import attention_beam
from speechalign.models.asr import build_model
from speechalign.models.ct2_import import import_whisper
from speechalign.models.experiment import ATT_TRAIN_VOCAB, load_experiment, read_ids
from speechalign.models.model_card import card_namespace
from speechalign.text import CharTokenizer
from speechalign.text.tokenizer import SPECIALS
from speechalign.text.whisper_vocab import WhisperVocab
from tests.conftest import TONE_CHARS
from tests.models.test_export import make_experiment, reference

pytest.importorskip("ctranslate2", reason="pip ctranslate2 builds the tiny pretrained Whisper")
from tests.tiny_whisper import convert_to_ct2, make_tiny_whisper, make_whisper_experiment, waveforms  # noqa: E402

WINDOW = 480000          # 30 s at 16 kHz: Whisper's window
GREEDY_CAP = 48          # tokens per utterance (attention_beam's max_len; the random decoder rarely ends)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """What fetch-pretrained leaves, from a tiny Whisper with Whisper's real id layout (CTranslate2 and
    faster-whisper treat only that as multilingual, so the zh/transcribe prompt runs as on whisper-base)."""
    root = tmp_path_factory.mktemp("tiny_whisper")
    ct2 = convert_to_ct2(make_tiny_whisper(root, gain=3.0, whisper_vocab=True), root / "ct2")
    return import_whisper(ct2, root / "imported")


def speechalign_greedy(exp, wavs) -> list[list[int]]:
    """speechalign's greedy attention decode (attention_beam at beam 1) of each utterance in a 30-s window:
    zero-padded to 30 s as Whisper's feature extractor pads, all of it read as the utterance (the input
    transformers and faster-whisper give the encoder, whatever the experiment's length mode)."""
    _, _, model = load_experiment(exp)
    out = []
    with torch.no_grad():
        for w in wavs:
            x = torch.zeros(1, WINDOW)
            x[0, : len(w)] = torch.from_numpy(w)
            enc = model.encode(x, torch.tensor([WINDOW]))
            assert int(enc.lengths[0]) == 1500
            out.append(attention_beam(model, enc.last[0], beam=1, max_len=GREEDY_CAP))
    return out


def hf_greedy(model, processor, wavs, max_new_tokens: int, **kwargs) -> list[list[int]]:
    out = []
    with torch.no_grad():
        for w in wavs:
            feats = processor.feature_extractor(w, sampling_rate=16000, return_tensors="pt").input_features
            ids = model.generate(feats, num_beams=1, do_sample=False, max_new_tokens=max_new_tokens, **kwargs)[0]
            eos = model.generation_config.eos_token_id
            out.append([i for i in ids.tolist() if i != eos])     # the generated tokens, without eos / padding
    return out


@pytest.fixture(scope="module", params=["pad30-full", "trim-targets"])
def exported(request, pretrained, tmp_path_factory):
    """(experiment, export dir): a pad30 model with the full softmax, and a trim model trained on a
    restricted vocabulary (train_vocab=targets)."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "pad30-full":
        exp = make_whisper_experiment(root / "exp", pretrained, "model.whisper.length_mode=pad30")
    else:
        # the fixture's BPE has no merges: the text's UTF-8 bytes (7 distinct) and eos are the training vocabulary
        exp = make_whisper_experiment(root / "exp", pretrained, "model.decoder.train_vocab=targets",
                                      targets_text="甲乙丙")
    assert main(["export", "--exp-dir", str(exp), "--out", str(root / "hf"), "--format", "hf"]) == 0
    return exp, root / "hf"


def test_export_is_a_whole_whisper_that_plain_transformers_loads(exported, pretrained):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    exp, out = exported
    cfg, _, model = load_experiment(exp)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "preprocessor_config.json",
            "tokenizer.json", "tokenizer_config.json", "ctc.safetensors", "tokens.txt", "README.md",
            "speechalign.json", "ctc_tokenizer"} <= names
    assert not any(p.suffix == ".bin" for p in out.iterdir())               # safetensors only
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["WhisperForConditionalGeneration"]
    hf = WhisperForConditionalGeneration.from_pretrained(out).eval()
    decoder = json.loads((exp / "decoder.json").read_text())
    assert (hf.config.decoder_layers, hf.config.decoder_attention_heads, hf.config.decoder_ffn_dim,
            hf.config.vocab_size, hf.config.max_target_positions) == (
        decoder["num_layers"], decoder["num_heads"], decoder["ffn_dim"], decoder["vocab_size"], decoder["max_len"])
    # the checkpoint's weights, not the pretrained ones they started from
    state = hf.state_dict()
    for k, v in model.encoder.encoder.state_dict().items():
        assert torch.equal(state[f"model.encoder.{k}"], v), k
    ours = model.decoder.state_dict()
    assert torch.equal(state["model.decoder.layers.0.fc1.weight"], ours["layers.layers.0.linear1.weight"])
    assert not torch.equal(ours["layers.layers.0.linear1.weight"],
                           load_file(str(pretrained / "decoder.safetensors"))["layers.layers.0.linear1.weight"])
    assert hf.proj_out.weight.data_ptr() == hf.model.decoder.embed_tokens.weight.data_ptr()
    assert torch.equal(hf.proj_out.weight, model.decoder.embed.weight)      # the tied output layer, all rows

    gen = hf.generation_config
    prefix = model.att_prefix                                               # <|sot|><|zh|><|transcribe|><|notimestamps|>
    assert gen.language == "zh" and gen.task == "transcribe" and not gen.return_timestamps
    assert gen.forced_decoder_ids == [[1, prefix[1]], [2, prefix[2]], [3, prefix[3]]]
    assert gen.decoder_start_token_id == prefix[0] and gen.no_timestamps_token_id == prefix[3]
    assert gen.alignment_heads == [[0, h] for h in range(4)]                 # the pretrained model's
    if cfg.model.decoder.train_vocab == "targets":
        allowed = set(model.decoder.allowed.nonzero().squeeze(-1).tolist())
        assert allowed == set(read_ids(exp / ATT_TRAIN_VOCAB)) and model.att_eos in allowed
        assert set(gen.suppress_tokens) == set(range(hf.config.vocab_size)) - allowed
    else:
        assert gen.suppress_tokens is None and gen.begin_suppress_tokens is None

    processor = WhisperProcessor.from_pretrained(out)
    assert processor.feature_extractor.feature_size == hf.config.num_mel_bins
    assert processor.tokenizer("甲乙").input_ids[:4] == prefix               # labels as the decoder was trained
    meta = json.loads((out / "speechalign.json").read_text())
    assert meta["whisper_decoder"]["architecture"] == "WhisperForConditionalGeneration"
    assert meta["ctc"]["tokenizer"] == "ctc_tokenizer"


def test_greedy_generate_and_pipeline_equal_speechalign_greedy_attention_decode(exported):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    exp, out = exported
    _, _, model = load_experiment(exp)
    wavs = waveforms(0)
    expected = speechalign_greedy(exp, wavs)
    hf = WhisperForConditionalGeneration.from_pretrained(out).eval()
    processor = WhisperProcessor.from_pretrained(out)
    # no language/task given: generation_config.json prompts as the decoder was trained
    assert hf_greedy(hf, processor, wavs, GREEDY_CAP) == expected
    assert len({tuple(e) for e in expected}) > 1                            # the decoder listens to the audio
    if model.decoder.allowed is not None:
        allowed = set(model.decoder.allowed.nonzero().squeeze(-1).tolist())
        assert all(set(e) <= allowed for e in expected)
        # the rows it was never trained on would win unsuppressed: the suppression list is what makes it equal
        free = hf_greedy(hf, processor, wavs[:1], GREEDY_CAP, suppress_tokens=[])
        assert not set(free[0]) <= allowed

    ns = card_namespace(out)        # the model card's code, as a reader runs it: pipeline, then faster-whisper
    texts = [ns["transcribe_whisper"](w, max_new_tokens=GREEDY_CAP) for w in wavs]
    assert texts == [model.att_vocab.decode(e) for e in expected]


def test_ctranslate2_conversion_runs_in_faster_whisper_as_transformers(exported, tmp_path):
    """ct2-transformers-converter's code on the export; faster-whisper decodes it greedily. On 30-s audio its
    tokens equal transformers' greedy tokens. Shorter audio is not compared: faster-whisper pads the log-mel
    features with zeros (pad_or_trim) where transformers and speechalign pad the waveform, so its encoder
    reads another input there."""
    from ctranslate2.converters import TransformersConverter
    from faster_whisper import WhisperModel
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    exp, out = exported
    ct2_dir = tmp_path / "ct2"
    TransformersConverter(str(out), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(str(ct2_dir))
    hf = WhisperForConditionalGeneration.from_pretrained(out).eval()
    processor = WhisperProcessor.from_pretrained(out)
    fw = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32")
    assert fw.model.is_multilingual
    suppress = hf.generation_config.suppress_tokens or []
    full = waveforms(3, lengths=(WINDOW, WINDOW))
    expected = hf_greedy(hf, processor, full, GREEDY_CAP)
    for w, ids in zip(full, expected):
        # CTranslate2 stops at half its max_length (prompt + max_new_tokens): openai/whisper's sample_len rule
        # (224 of 448), so it returns the first ~half of the tokens transformers was allowed
        segments, info = fw.transcribe(w, language="zh", beam_size=1, temperature=0.0, without_timestamps=True,
                                       suppress_blank=False, suppress_tokens=suppress, vad_filter=False,
                                       condition_on_previous_text=False, no_speech_threshold=None,
                                       max_new_tokens=GREEDY_CAP)
        segments = list(segments)
        assert info.language == "zh" and len(segments) == 1
        tokens = segments[0].tokens
        assert len(tokens) >= min(len(ids), GREEDY_CAP // 2) and tokens == ids[: len(tokens)]
    ns = card_namespace(out)
    text = ns["transcribe_faster_whisper"](full[0], str(ct2_dir), "float32")
    assert text and processor.tokenizer.decode(expected[0], skip_special_tokens=True).strip().startswith(text[:20])
    assert isinstance(ns["transcribe_faster_whisper"](waveforms(4)[0], str(ct2_dir), "float32"), str)


def test_card_states_and_ctc_from_the_whole_model_equal_speechalign(exported):
    """The card's encoder code loads the encoder out of the WhisperForConditionalGeneration (WhisperEncoder.
    from_pretrained would start from random weights there); its states and CTC transcripts are speechalign's."""
    exp, out = exported
    wavs = waveforms(5)
    enc, _, texts = reference(exp, wavs)
    ns = card_namespace(out)
    for i, w in enumerate(wavs):
        n = int(enc.speech_lengths[i])
        states = ns["hidden_states"](w)
        assert len(states) == len(enc.hidden_states)
        for mine, ref in zip(states, enc.hidden_states):
            assert float((mine[:n] - ref[i, :n]).abs().max()) <= 1e-4
    assert [ns["transcribe"](w) for w in wavs] == texts
    from transformers import Wav2Vec2CTCTokenizer

    assert len(Wav2Vec2CTCTokenizer.from_pretrained(out / "ctc_tokenizer")) == len(SPECIALS) + len(TONE_CHARS)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "WhisperForConditionalGeneration" in card and "ct2-transformers-converter" in card
    mode = load_experiment(exp)[0].model.whisper.length_mode
    assert ("**not** reproduced" in card) == (mode == "trim")


def test_export_without_a_whisper_decoder_is_as_before(tmp_path):
    """A Whisper encoder without a decoder: the encoder alone (WhisperEncoder), the CTC tokenizer at the top."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    exp = make_experiment(tmp_path / "exp", "whisper")
    assert main(["export", "--exp-dir", str(exp), "--out", str(tmp_path / "hf"), "--format", "hf"]) == 0
    out = tmp_path / "hf"
    assert json.loads((out / "config.json").read_text())["architectures"] == ["WhisperEncoder"]
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "ctc.safetensors", "tokens.txt",
            "vocab.json", "tokenizer_config.json", "README.md", "speechalign.json", "speechalign_config.yaml"} <= names
    assert not names & {"generation_config.json", "ctc_tokenizer", "tokenizer.json"}
    WhisperEncoder.from_pretrained(out)
    meta = json.loads((out / "speechalign.json").read_text())
    assert "whisper_decoder" not in meta and "tokenizer" not in meta["ctc"]
    assert "WhisperForConditionalGeneration" not in (out / "README.md").read_text(encoding="utf-8")


def test_a_whisper_decoder_on_another_encoder_stays_behind(tmp_path):
    """transformers has no model of a conformer with Whisper's decoder: encoder and CTC head as before, and
    the card says the decoder is not exported."""
    from tests.train.conftest import make_whisper_like_dir

    whisper_like = make_whisper_like_dir(tmp_path)
    cfg = load_config(None, ["model.encoder=conformer", "model.conformer.d_model=32", "model.conformer.num_layers=1",
                             "model.conformer.num_heads=2", "model.conformer.ffn_dim=64",
                             f"model.decoder.pretrained={whisper_like}", "model.ctc_weight=0.5"])
    tokenizer = CharTokenizer(list(SPECIALS) + list(TONE_CHARS))
    model = build_model(cfg, len(tokenizer), None, None, WhisperVocab(whisper_like / "tokenizer.json"))
    exp = tmp_path / "exp"
    exp.mkdir()
    save_config(cfg, exp / "config.yaml")
    tokenizer.save(exp / "tokens.txt")
    shutil.copy(whisper_like / "decoder.json", exp / "decoder.json")
    shutil.copy(whisper_like / "tokenizer.json", exp / "whisper_tokenizer.json")
    (exp / "checkpoints" / "step-1").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(exp / "checkpoints/step-1/model.safetensors"))
    assert main(["export", "--exp-dir", str(exp), "--out", str(tmp_path / "hf"), "--format", "hf"]) == 0
    names = {p.name for p in (tmp_path / "hf").iterdir()}
    assert "encoder.safetensors" in names and "generation_config.json" not in names and "vocab.json" in names
    assert "the decoder is not exported" in (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")
