"""``speechalign transcribe --onnx``: CTC greedy transcripts from an exported ONNX model
(:class:`speechalign.models.onnx_ctc.OnnxCTC`), batched by the data package's collation and checked
like the PyTorch path's audio."""

from __future__ import annotations

from pathlib import Path

import torch

from speechalign.data.dataset import collate_audio
from speechalign.decode.ctc import ctc_greedy
from speechalign.decode.run import audio_files_16k
from speechalign.models.onnx_ctc import OnnxCTC
from speechalign.text import CharTokenizer


class OnnxGreedy:
    """An export directory's ONNX session and its tokenizer: padded batches -> CTC greedy texts."""

    def __init__(self, path: str | Path, num_threads: int = 0):
        self.model = OnnxCTC(path, num_threads)
        self.tokenizer = CharTokenizer.load(self.model.tokens_path)

    def transcribe_batch(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> list[str]:
        return [self.tokenizer.decode(ids) for ids in ctc_greedy(*self.model.log_probs(wav, wav_lens))]


def transcribe_onnx(path: str | Path, files: list[str | Path], skip_bad: bool = False) -> list[str | None]:
    """CTC greedy transcripts in file order, one file at a time and with the same audio checks as the
    PyTorch path; with ``skip_bad`` an unreadable file gives None."""
    onnx = OnnxGreedy(path)
    return [None if audio is None else onnx.transcribe_batch(*collate_audio([audio]))[0]
            for audio in audio_files_16k(files, onnx.model.encoder_min_samples, skip_bad)]
