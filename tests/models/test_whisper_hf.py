"""The transformers WhisperForConditionalGeneration dir written beside an imported Whisper (hf/): plain
transformers loads it, its weights are the original model's, and its greedy generate is CTranslate2's
zero-shot transcript."""

import json

import numpy as np
import pytest
import torch

ctranslate2 = pytest.importorskip("ctranslate2", reason="pip ctranslate2 is needed to produce a reference model")

from speechalign.cli import main  # noqa: E402
from speechalign.data.manifest import load_cuts, load_mono  # noqa: E402
from speechalign.decode.whisper_zero_shot import WhisperText, whisper_features  # noqa: E402
from speechalign.models.ct2_import import import_whisper  # noqa: E402
from speechalign.models.frontend import WhisperLogMel  # noqa: E402
from speechalign.text import normalize  # noqa: E402
from tests.tiny_whisper import convert_to_ct2, make_tiny_whisper  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(original transformers dir, CTranslate2 dir, import-whisper output with hf/)."""
    root = tmp_path_factory.mktemp("whisper_hf")
    original = make_tiny_whisper(root, gain=3.0)
    ct2 = convert_to_ct2(original, root / "ct2")
    return original, ct2, import_whisper(ct2, root / "imported")


def test_hf_dir_loads_with_plain_transformers_and_equals_the_original(tiny):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizerFast

    original, _, imported = tiny
    assert {"config.json", "model.safetensors", "generation_config.json", "preprocessor_config.json",
            "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in (imported / "hf").iterdir()}
    ours = WhisperForConditionalGeneration.from_pretrained(imported / "hf")
    ref = WhisperForConditionalGeneration.from_pretrained(original)
    for key in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
                "encoder_ffn_dim", "decoder_ffn_dim", "vocab_size", "max_target_positions", "max_source_positions",
                "num_mel_bins", "decoder_start_token_id", "eos_token_id"):
        assert getattr(ours.config, key) == getattr(ref.config, key), key
    theirs = ref.state_dict()
    mine = ours.state_dict()
    assert sorted(mine) == sorted(theirs)
    for name, value in theirs.items():
        assert torch.equal(mine[name], value), name          # float32 round trip through CTranslate2: exact
    assert ours.proj_out.weight.data_ptr() == ours.model.decoder.embed_tokens.weight.data_ptr()   # tied

    processor = WhisperProcessor.from_pretrained(imported / "hf")
    assert isinstance(processor.tokenizer, WhisperTokenizerFast)
    assert processor.feature_extractor.feature_size == 80 and processor.feature_extractor.chunk_length == 30
    gen = ours.generation_config
    ct2_config = json.loads((tiny[1] / "config.json").read_text())
    assert gen.suppress_tokens == ct2_config["suppress_ids"]
    assert gen.begin_suppress_tokens == ct2_config["suppress_ids_begin"]
    assert gen.lang_to_id == {"<|en|>": 102, "<|zh|>": 103} and gen.task_to_id == {"transcribe": 105, "translate": 104}
    assert gen.no_timestamps_token_id == 109 and gen.decoder_start_token_id == 101 and gen.is_multilingual
    processor.tokenizer.set_prefix_tokens(language="zh", task="transcribe")
    ids = processor.tokenizer("t").input_ids   # the tiny vocabulary has no merges: only the prompt matters here
    assert ids[:4] == [101, 103, 105, 109] and ids[-1] == 100                  # Whisper's training prompt + eot


def test_greedy_generate_equals_ct2_zero_shot(tiny, tone_corpus, tmp_path):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    _, ct2_dir, imported = tiny
    assert main(["decode-whisper", "--ct2-dir", str(ct2_dir), "--cuts", str(tone_corpus["dev"]),
                 "--out", str(tmp_path / "zs"), "--device", "cpu"]) == 0
    rows = [r.split("\t") for r in (tmp_path / "zs/recogs-tones_dev-whisper_greedy.txt").read_text(
        encoding="utf-8").splitlines()[2:]]
    zero_shot = {r[0]: r[3] for r in rows}

    model = WhisperForConditionalGeneration.from_pretrained(imported / "hf").eval()
    processor = WhisperProcessor.from_pretrained(imported / "hf")
    reference = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    text, mel = WhisperText(ct2_dir / "tokenizer.json", "zh"), WhisperLogMel(80)
    cuts = list(load_cuts(tone_corpus["dev"]))
    audio = [load_mono(c) for c in cuts]
    feats = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        # CTranslate2 (like openai/whisper's sample_len = n_text_ctx // 2) stops after 224 new tokens; the
        # random decoder loops until then on most cuts, so transformers gets the same budget.
        out = model.generate(feats, language="zh", task="transcribe", num_beams=1, do_sample=False,
                             max_new_tokens=224)
    distinct = set()
    for cut, wav, row in zip(cuts, audio, out.tolist()):
        # transformers returns the generated tokens only (the prompt is the CTranslate2 one: WhisperText.prompt)
        hf_ids = [i for i in row if i != text.eot]                 # without eos / padding
        ours = whisper_features(torch.from_numpy(wav)[None], torch.tensor([len(wav)]), mel)
        result = reference.generate(ctranslate2.StorageView.from_array(ours), [text.prompt], beam_size=1,
                                    max_length=448, suppress_blank=True)[0]
        assert hf_ids == result.sequences_ids[0], cut.id            # token for token
        hyp = processor.tokenizer.decode(hf_ids, skip_special_tokens=True)
        assert normalize(hyp) == zero_shot[cut.id], cut.id          # = decode-whisper's recogs
        distinct.add(tuple(hf_ids))
    assert len(distinct) > 2            # the fixture's decoder listens to the audio: not a vacuous match


def test_cli_export_and_import_without_hf(tiny, tmp_path):
    from transformers import WhisperForConditionalGeneration

    original, ct2_dir, _ = tiny
    assert main(["import-whisper", "--ct2-dir", str(ct2_dir), "--out", str(tmp_path / "imp"), "--no-hf"]) == 0
    assert not (tmp_path / "imp/hf").exists()
    assert main(["export-whisper-hf", "--whisper-dir", str(tmp_path / "imp"), "--out", str(tmp_path / "hf")]) == 0
    ours = WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf").state_dict()
    ref = WhisperForConditionalGeneration.from_pretrained(original).state_dict()
    assert all(torch.equal(ours[k], v) for k, v in ref.items())
    # a cold-started character decoder is no Whisper decoder: a clear error, nothing written
    (tmp_path / "imp/decoder.json").write_text(json.dumps({**json.loads((tmp_path / "imp/decoder.json").read_text()),
                                                           "tie_output": False}))
    assert main(["export-whisper-hf", "--whisper-dir", str(tmp_path / "imp"), "--out", str(tmp_path / "bad")]) == 1
    assert not (tmp_path / "bad").exists()


def test_a_key_bias_is_dropped_without_changing_the_output():
    """Whisper has no key bias; ours may learn one. Softmax is invariant to it, so the export is exact."""
    from speechalign.models.decoder import AttentionDecoder
    from speechalign.models.whisper_hf import decoder_to_hf

    torch.manual_seed(0)
    dec = AttentionDecoder(20, 16, 1, 2, 32, 0.0, max_len=8, activation="gelu", learned_positions=True,
                           scale_embedding=False, tie_output=True).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.normal_(0, 0.3)
    state = dec.state_dict()
    mapped = decoder_to_hf(state, 16)
    assert "model.decoder.layers.0.self_attn.k_proj.bias" not in mapped
    assert state["layers.layers.0.self_attn.in_proj_bias"][16:32].abs().sum() > 0
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperDecoder

    cfg = WhisperConfig(vocab_size=20, d_model=16, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32,
                        max_target_positions=8, pad_token_id=0, bos_token_id=0, eos_token_id=0, decoder_start_token_id=1)
    hf = WhisperDecoder(cfg).eval()
    hf.load_state_dict({k.removeprefix("model.decoder."): v for k, v in mapped.items()}, strict=True)
    tokens, memory = torch.tensor([[1, 5, 7, 3]]), torch.randn(1, 6, 16)
    with torch.no_grad():
        ours = dec(tokens, memory, torch.zeros(1, 6, dtype=torch.bool))
        theirs = torch.nn.functional.linear(hf(input_ids=tokens, encoder_hidden_states=memory).last_hidden_state,
                                            hf.embed_tokens.weight)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_fetch_pretrained_adds_hf_to_a_dir_imported_before_it_existed(tiny, tmp_path):
    """No download: the model is already imported (keep_ct2, as fetch-pretrained does), only hf/ is missing."""
    from transformers import WhisperForConditionalGeneration

    from speechalign.models.fetch import fetch_pretrained

    original, ct2_dir, _ = tiny
    cache = import_whisper(ct2_dir, tmp_path / "whisper-base", keep_ct2=True, hf=False)
    assert not (cache / "hf").exists()
    assert fetch_pretrained("whisper-base", cache) == cache
    ours = WhisperForConditionalGeneration.from_pretrained(cache / "hf").state_dict()
    ref = WhisperForConditionalGeneration.from_pretrained(original).state_dict()
    assert all(torch.equal(ours[k], v) for k, v in ref.items())
    assert json.loads((cache / "hf/export_source.json").read_text())["whisper_dir"] == ".."
