"""Character tokenizer with CTC/attention special symbols, saved as a plain ``token id`` file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from speechalign.atomic import write_text

BLANK, UNK, SOS_EOS = "<blank>", "<unk>", "<sos/eos>"
SPECIALS = (BLANK, UNK, SOS_EOS)


class CharTokenizer:
    """Maps characters of normalized text to ids: ``<blank>``=0, ``<unk>``=1, ``<sos/eos>``=2."""

    def __init__(self, tokens: list[str]):
        if list(tokens[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"token list must start with {SPECIALS}, got {tokens[:3]}")
        if len(set(tokens)) != len(tokens):
            dup = [t for t, c in Counter(tokens).items() if c > 1]
            raise ValueError(f"duplicate tokens: {dup[:5]}")
        self.tokens = list(tokens)
        self.token2id = {t: i for i, t in enumerate(self.tokens)}
        self.unk_counts: Counter[str] = Counter()

    blank_id = 0
    unk_id = 1
    sos_eos_id = 2

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "CharTokenizer":
        """Vocabulary of all characters seen at least ``min_count`` times, most frequent first."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text)
        chars = sorted((c for c, n in counts.items() if n >= min_count and c not in SPECIALS),
                       key=lambda c: (-counts[c], c))
        chars = [c for c in chars if not c.isspace()]
        return cls(list(SPECIALS) + chars)

    def encode(self, text: str) -> list[int]:
        ids = []
        for ch in text:
            if ch.isspace():
                continue
            i = self.token2id.get(ch)
            if i is None or i < len(SPECIALS):
                self.unk_counts[ch] += 1
                i = self.unk_id
            ids.append(i)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[i] for i in ids if i >= len(SPECIALS) or i == self.unk_id)

    def save(self, path: str | Path) -> None:
        write_text(path, "".join(f"{t} {i}\n" for i, t in enumerate(self.tokens)))

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        tokens = []
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            parts = line.rsplit(" ", 1)
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) != len(tokens):
                raise ValueError(f"{path}:{n}: expected '<token> {len(tokens)}', got {line!r}")
            tokens.append(parts[0])
        return cls(tokens)
