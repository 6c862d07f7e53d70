"""Whisper's byte-level BPE vocabulary, for a pretrained Whisper decoder used as the attention branch.

The decoder is prompted as Whisper was trained (``<|startoftranscript|><|zh|><|transcribe|>
<|notimestamps|>``) and ends with ``<|endoftext|>``; targets are the same normalized text the CTC
branch learns, so both branches agree on what is being transcribed.
"""

from __future__ import annotations

from pathlib import Path

TIMESTAMP_STEP = 0.02          # seconds between two of Whisper's timestamp tokens
TIMESTAMPS = 1501              # <|0.00|> ... <|30.00|>


class WhisperVocab:
    def __init__(self, tokenizer_json: str | Path, language: str = "zh"):
        from tokenizers import Tokenizer

        path = Path(tokenizer_json)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: Whisper tokenizer.json not found (speechalign fetch-pretrained "
                                    "whisper-base writes one beside the imported model)")
        self.path, self.language = path, language
        self.tokenizer = Tokenizer.from_file(str(path))
        names = ["<|startoftranscript|>", f"<|{language}|>", "<|transcribe|>", "<|notimestamps|>"]
        self.prefix = [self._special(n) for n in names]
        self.eos = self._special("<|endoftext|>")

    def prompted(self, text: str, timed: bool = False) -> list[int]:
        """The prefix after Whisper's previous-text prompt ``<|startofprev|> text``."""
        return [self._special("<|startofprev|>"), *self.encode(" " + text), *self.prefix_for(timed)]

    def prefix_for(self, timed: bool) -> list[int]:
        """The prefix of a target with timestamp tokens (``timed``: Whisper's, without ``<|notimestamps|>``)
        or without them."""
        return self.prefix[:-1] if timed else self.prefix

    def timestamp(self, seconds: float) -> int:
        """Whisper's timestamp token nearest ``seconds`` (a 0.02-s grid from <|0.00|> to <|30.00|>)."""
        step = min(max(round(seconds / TIMESTAMP_STEP), 0), TIMESTAMPS - 1)
        return self._special(f"<|{step * TIMESTAMP_STEP:.2f}|>")

    def timestamp_ids(self) -> list[int]:
        return [self.timestamp(i * TIMESTAMP_STEP) for i in range(TIMESTAMPS)]

    def timed(self, parts: list[str], spans: list[tuple[float, float]]) -> list[int]:
        """A window's target as Whisper's long-form data has it: ``<|start|> text <|end|>`` per part."""
        if len(parts) != len(spans):
            raise ValueError(f"{len(parts)} texts for {len(spans)} time spans")
        return [i for text, (a, b) in zip(parts, spans)
                for i in (self.timestamp(a), *self.encode(text), self.timestamp(b))]

    def _special(self, name: str) -> int:
        idx = self.tokenizer.token_to_id(name)
        if idx is None:
            raise ValueError(f"{self.path}: special token {name} is not in the vocabulary")
        return idx

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i < self.eos], skip_special_tokens=True)
