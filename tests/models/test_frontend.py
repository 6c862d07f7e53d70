"""The front ends give the same features in PyTorch and in onnxruntime, also on the near-silent spectral
bins of a pure tone, where a float32 STFT's rounding reaches the log (it moved features by 4e-3)."""

import numpy as np
import pytest
import torch

from speechalign.models.export import _quiet_exporter
from speechalign.models.frontend import LogFbank, WhisperLogMel


class FrontEndGraph(torch.nn.Module):
    def __init__(self, frontend: torch.nn.Module):
        super().__init__()
        self.frontend = frontend

    def forward(self, wav, wav_lens):
        return self.frontend(wav, wav_lens)[0]


def tone_and_noise() -> tuple[torch.Tensor, torch.Tensor]:
    t = np.arange(48000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    noise = 0.1 * np.random.default_rng(0).standard_normal(48000)
    noise[30000:] = 0.0  # zero-padded tail: exercises the valid-frame masks
    return torch.from_numpy(np.stack([tone, noise]).astype(np.float32)), torch.tensor([48000, 30000])


@pytest.mark.parametrize("frontend", [WhisperLogMel, LogFbank])
def test_frontend_onnx_equals_pytorch(frontend, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    module = FrontEndGraph(frontend(80)).eval()
    example = (torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000]))
    batch, samples = torch.export.Dim("batch", min=1), torch.export.Dim("samples", min=1600, max=480000)
    with _quiet_exporter():
        torch.onnx.export(module, example, str(tmp_path / "fe.onnx"), dynamo=True, input_names=["wav", "wav_lens"],
                          dynamic_shapes=({0: batch, 1: samples}, {0: batch}), verbose=False)
    session = ort.InferenceSession(str(tmp_path / "fe.onnx"), providers=["CPUExecutionProvider"])
    wav, lens = tone_and_noise()
    with torch.no_grad():
        ref = module(wav, lens).numpy()
    got = session.run(None, {"wav": wav.numpy(), "wav_lens": lens.numpy()})[0]
    assert ref.shape == got.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
