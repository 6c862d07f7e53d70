"""--engine ct2: a tiny random-init Whisper experiment converted to CTranslate2 once per weights (cached by their
SHA-256), whose greedy transcripts equal speechalign's PyTorch attention_beam at beam 1, through decode's reports
and transcribe alike."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from speechalign.data.dataset import collate_audio
from speechalign.decode.engines import make_engine
from speechalign.models.ct2_export import ct2_cache_dir, ct2_model
from speechalign.models.experiment import load_experiment

pytest.importorskip("ctranslate2")
from tests.tiny_whisper import convert_to_ct2, make_tiny_whisper, make_whisper_experiment, waveforms  # noqa: E402


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    from speechalign.models.ct2_import import import_whisper

    root = tmp_path_factory.mktemp("ct2_engine")
    ct2 = convert_to_ct2(make_tiny_whisper(root, gain=3.0, whisper_vocab=True), root / "ct2")
    pretrained = import_whisper(ct2, root / "imported")
    return make_whisper_experiment(root / "exp", pretrained, "model.whisper.length_mode=pad30")


def texts(exp, engine: str, wavs, **kwargs) -> list[str]:
    _, tokenizer, model = load_experiment(exp)
    run = make_engine(engine, exp, "latest", model, tokenizer, "attention_beam", 1, **kwargs)
    wav, lens = collate_audio(wavs)
    return run(wav, lens, None, None, 24).texts


def test_ct2_greedy_equals_the_pytorch_search(experiment):
    wavs = waveforms(3)
    torch_texts = texts(experiment, "torch", wavs)
    assert len(set(torch_texts)) > 1   # the random decoder follows the audio: equality below is not vacuous
    assert texts(experiment, "ct2", wavs, compute_type="float32") == torch_texts


def test_ct2_is_converted_once_per_weights(experiment):
    first = ct2_model(experiment, "latest")
    stamp = (first / "model.bin").stat().st_mtime_ns
    assert ct2_model(experiment, "latest") == first and (first / "model.bin").stat().st_mtime_ns == stamp
    weights = experiment / "checkpoints/step-1/model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.startswith("decoder.") and state[k].ndim == 2)
    state[key] = state[key] + 0.5
    save_file(state, str(weights))
    second = ct2_cache_dir(experiment, "latest")
    assert second != first and not second.exists()
    assert ct2_model(experiment, "latest") == second and (second / "model.bin").is_file()
    assert not first.exists()   # the stale conversion of the same checkpoint name is gone


def test_ct2_refuses_what_it_cannot_run(experiment, tmp_path):
    from tests.models.test_export import make_experiment

    _, tokenizer, model = load_experiment(experiment)
    with pytest.raises(ValueError, match="attention_beam"):
        make_engine("ct2", experiment, "latest", model, tokenizer, "ctc_greedy", 1)
    conformer = make_experiment(tmp_path / "c", "conformer")
    _, tokenizer, model = load_experiment(conformer)
    with pytest.raises(ValueError, match="not a Whisper experiment"):
        make_engine("ct2", conformer, "latest", model, tokenizer, "attention_beam", 1)
    with pytest.raises(ValueError, match="unknown engine"):
        make_engine("onnx", conformer, "latest", model, tokenizer, "attention_beam", 1)


def test_decode_with_ct2_writes_the_same_reports(experiment, tone_corpus, tmp_path):
    from speechalign.data.manifest import load_cuts
    from speechalign.decode.run import decode

    cuts = tmp_path / "tones_cuts_dev.jsonl.gz"
    load_cuts(tone_corpus["dev"]).subset(first=2).to_file(cuts)   # a random decoder runs to its length limit
    torch_cer = decode(experiment, [cuts], mode="attention_beam", beam=1)
    ct2_cer = decode(experiment, [cuts], mode="attention_beam", beam=1, engine="ct2", compute_type="float32")
    out = experiment / "decode" / "latest"
    plain = (out / "recogs-tones_dev-attention_beam.txt").read_text(encoding="utf-8").splitlines()[1:]
    fast = (out / "recogs-tones_dev-attention_beam+ct2.txt").read_text(encoding="utf-8").splitlines()[1:]
    assert plain == fast and len(plain) > 0
    assert "engine=ct2" in (out / "cer-tones_dev-attention_beam+ct2.md").read_text(encoding="utf-8")
    assert torch_cer["tones_dev"].overall() == ct2_cer["tones_dev"].overall()
