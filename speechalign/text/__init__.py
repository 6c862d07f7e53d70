"""Text normalization and tokenization (no torch here)."""

from speechalign.text.normalize import describe, is_han, normalize
from speechalign.text.tokenizer import CharTokenizer

__all__ = ["CharTokenizer", "describe", "is_han", "normalize"]
