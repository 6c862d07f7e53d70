"""One text normalization for references, hypotheses, vocabularies and manifests alike.

Steps, in order: drop YuBao alternates ("甲。/乙。" keeps "甲。"), Unicode NFKC (full-width to
half-width), traditional to simplified (OpenCC t2s, with its variant pairs merged), lower-case, then
remove every character whose Unicode category is punctuation (P*), separator/whitespace (Z*),
control/format (C*) or symbol (S*).
Digits are kept unless ``keep_digits=False``; ``han_only=True`` keeps Han characters only.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_ALTERNATE = re.compile(r"/[^。]*。?")
_DROP_CATEGORIES = ("P", "Z", "C", "S")


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


# The Han blocks whose characters are checked for OpenCC variant pairs (Extension A and the URO).
_VARIANT_SCAN = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF))


@lru_cache(maxsize=1)
def _variants() -> dict[int, str]:
    """OpenCC's t2s leaves some simplified variants alone (锺, 馀, 侭, ...; 22 characters with today's
    OpenCC) while it maps their traditional forms to the standard character (鍾 -> 钟), so a reference
    and a hypothesis that differ only in script would not match. Each such pair is merged: onto the form
    reached through the traditional one when t2s keeps that form, else onto t2s's own output. Derived
    from the installed tables, not typed."""
    import opencc

    s2t, t2s = opencc.OpenCC("s2t"), _t2s()
    table = {}
    for lo, hi in _VARIANT_SCAN:
        for code in range(lo, hi + 1):
            direct, via = t2s.convert(chr(code)), t2s.convert(s2t.convert(chr(code)))
            if direct != via and len(direct) == len(via) == 1:
                canon = via if t2s.convert(via) == via else direct
                table.update({ord(direct): canon, ord(via): canon})
    return {k: v for k, v in table.items() if chr(k) != v}


def is_han(ch: str) -> bool:
    """True for CJK unified ideographs (all extensions) and compatibility ideographs."""
    return unicodedata.name(ch, "").startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"))


def _keep(ch: str, keep_digits: bool, han_only: bool) -> bool:
    if han_only:
        return is_han(ch)
    cat = unicodedata.category(ch)
    if cat[0] in _DROP_CATEGORIES:
        return False
    if cat[0] == "N" and not keep_digits:
        return False
    return not ch.isspace()


def _one_pass(text: str, keep_digits: bool, han_only: bool) -> str:
    # Lone surrogates cannot be UTF-8 encoded for OpenCC; they are category Cs and dropped anyway.
    text = "".join(ch for ch in text if not 0xD800 <= ord(ch) <= 0xDFFF)
    text = unicodedata.normalize("NFKC", text)
    text = _t2s().convert(text).translate(_variants()).lower()
    return "".join(ch for ch in text if _keep(ch, keep_digits, han_only))


def normalize(text: str, *, keep_digits: bool = True, han_only: bool = False) -> str:
    """Normalize Chinese (or any) text for CER scoring and tokenization.

    Idempotent: conversion and case-folding can expose new compatibility forms, so the character
    pipeline is repeated until the text stops changing (in practice at most twice).
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize() expects str, got {type(text).__name__}")
    text = _ALTERNATE.sub("", text)
    for _ in range(4):
        out = _one_pass(text, keep_digits, han_only)
        if out == text:
            break
        text = out
    return text


def describe(*, keep_digits: bool = True, han_only: bool = False) -> str:
    """A one-line description of the normalization, recorded in every report header."""
    kept = "Han only" if han_only else ("digits kept" if keep_digits else "digits removed")
    return (
        "NFKC + OpenCC t2s (variant pairs merged) + lower-case; YuBao alternates dropped; "
        f"Unicode categories P/Z/C/S removed; {kept}"
    )
