import json

import numpy as np
import pytest
import torch

ctranslate2 = pytest.importorskip("ctranslate2", reason="pip ctranslate2 is needed to produce a reference model")

from speechalign.cli import main  # noqa: E402
from speechalign.models.ct2_import import Ct2FormatError, read_ct2_model  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    """A random tiny Whisper saved with a minimal tokenizer, as CTranslate2's converter needs one."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperTokenizer

    root = tmp_path_factory.mktemp("whisper")
    vocab = {f"t{i}": i for i in range(100)}
    vocab.update({s: 100 + i for i, s in enumerate(SPECIALS)})
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    WhisperTokenizer(str(root / "vocab.json"), str(root / "merges.txt"),
                     additional_special_tokens=SPECIALS[2:]).save_pretrained(root / "hf")
    config = WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                           decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                           vocab_size=len(vocab), pad_token_id=100, bos_token_id=100, eos_token_id=100,
                           decoder_start_token_id=101)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():  # non-trivial biases and norms, so an aliasing or bias bug cannot hide
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(root / "hf")
    return root


def _convert(src, dst, quantization=None):
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(src)).convert(str(dst), quantization=quantization, force=True)
    return dst


@pytest.mark.parametrize("quantization, tol", [(None, 1e-3), ("float16", 2e-2), ("int8", 0.15)])
def test_import_matches_ctranslate2_encoder(tiny_whisper, tmp_path, quantization, tol):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    ct2_dir = _convert(tiny_whisper / "hf", tmp_path / "ct2", quantization)
    assert main(["import-whisper", "--ct2-dir", str(ct2_dir), "--out", str(tmp_path / "enc")]) == 0
    encoder = WhisperEncoder.from_pretrained(str(tmp_path / "enc")).eval()
    feats = np.random.default_rng(0).standard_normal((1, 80, 3000)).astype(np.float32)
    reference = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(feats)))
    with torch.no_grad():
        ours = encoder(torch.from_numpy(feats)).last_hidden_state.numpy()
    assert ours.shape == expected.shape == (1, 1500, 64)
    assert np.abs(ours - expected).max() <= tol


def test_truncated_or_foreign_model_bin_is_a_clear_error(tiny_whisper, tmp_path):
    ct2_dir = _convert(tiny_whisper / "hf", tmp_path / "ct2")
    data = (ct2_dir / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(Ct2FormatError, match="truncated"):
        read_ct2_model(tmp_path / "cut.bin")
    (tmp_path / "v5.bin").write_bytes((5).to_bytes(4, "little") + data[4:])
    with pytest.raises(Ct2FormatError, match="binary version 5"):
        read_ct2_model(tmp_path / "v5.bin")
    assert main(["import-whisper", "--ct2-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 1
