import numpy as np
import pytest
import torch

ctranslate2 = pytest.importorskip("ctranslate2", reason="pip ctranslate2 is needed to produce a reference model")

from speechalign.cli import main  # noqa: E402
from speechalign.models.ct2_import import Ct2FormatError, read_ct2_model  # noqa: E402
from tests.tiny_whisper import convert_to_ct2, make_tiny_whisper  # noqa: E402


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    """A random tiny Whisper saved with a minimal tokenizer, as CTranslate2's converter needs one."""
    root = tmp_path_factory.mktemp("whisper")
    make_tiny_whisper(root)
    return root


@pytest.mark.parametrize("quantization, tol", [(None, 1e-3), ("float16", 2e-2), ("int8", 0.15)])
def test_import_matches_ctranslate2_encoder(tiny_whisper, tmp_path, quantization, tol):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    ct2_dir = convert_to_ct2(tiny_whisper / "hf", tmp_path / "ct2", quantization)
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
    ct2_dir = convert_to_ct2(tiny_whisper / "hf", tmp_path / "ct2")
    data = (ct2_dir / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(Ct2FormatError, match="truncated"):
        read_ct2_model(tmp_path / "cut.bin")
    (tmp_path / "v5.bin").write_bytes((5).to_bytes(4, "little") + data[4:])
    with pytest.raises(Ct2FormatError, match="binary version 5"):
        read_ct2_model(tmp_path / "v5.bin")
    assert main(["import-whisper", "--ct2-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 1
