"""Running an exported ONNX CTC model (``speechalign export --format onnx``) with onnxruntime: the
session only; transcribing files with it is :mod:`speechalign.decode.onnx_transcribe`."""

from __future__ import annotations

import json
from pathlib import Path

import torch


class OnnxCTC:
    """``model.onnx`` + ``tokens.txt`` + ``speechalign.json`` of an export directory (``tokens_path`` is
    the CTC vocabulary, for the decoder that turns the log-probabilities into text)."""

    def __init__(self, path: str | Path, num_threads: int = 0):
        import onnxruntime as ort

        path = Path(path)
        model = path if path.suffix == ".onnx" else path / "model.onnx"
        root = model.parent
        for needed in (root / "speechalign.json", root / "tokens.txt"):
            if not needed.is_file():
                raise FileNotFoundError(f"--onnx {path}: {needed} not found (expected a `speechalign export "
                                        "--format onnx` directory)")
        meta = json.loads((root / "speechalign.json").read_text(encoding="utf-8"))
        if "onnx" not in meta:
            raise ValueError(f"{root / 'speechalign.json'}: no 'onnx' field (an hf export, not an onnx one)")
        if not model.is_file():
            raise FileNotFoundError(f"--onnx {path}: {model} not found")
        self.min_samples = int(meta["onnx"]["min_samples"])        # of a batch (shorter ones are padded)
        self.encoder_min_samples = int(meta.get("min_samples", 1))  # of an utterance, as the PyTorch path checks
        self.max_samples = meta["onnx"]["max_samples"]
        self.tokens_path = root / "tokens.txt"
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def log_probs(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A zero-padded (B, N) batch -> CTC log-probabilities (B, T, V) and valid frames (B,), as
        ``model.ctc_log_probs(model.encode(wav, wav_lens))`` computes them in PyTorch."""
        longest = int(wav_lens.max())
        if self.max_samples and longest > self.max_samples:
            raise ValueError(f"onnx: input of {longest / 16000:.1f} s exceeds this model's "
                             f"{self.max_samples / 16000:.0f} s")
        if wav.shape[1] < self.min_samples:  # padding is masked, so it changes no output
            wav = torch.nn.functional.pad(wav, (0, self.min_samples - wav.shape[1]))
        log_probs, lengths = self.session.run(["log_probs", "lengths"], {
            "wav": wav.float().numpy(), "wav_lens": wav_lens.long().numpy()})
        return torch.from_numpy(log_probs), torch.from_numpy(lengths)
