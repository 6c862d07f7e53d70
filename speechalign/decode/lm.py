"""Character n-gram language model: training with KenLM's ``lmplz`` and scoring through the KenLM that
flashlight-text ships (the same code the CTC beam search queries, so every decoder sees one LM).

Each character is a KenLM "word": training text is the normalized transcript with the experiment's
tokenizer applied and the tokens joined by spaces (characters outside tokens.txt become ``<unk>``,
which is what the acoustic model emits for them). Scores are natural-log probabilities.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from speechalign.text import CharTokenizer, normalize
from speechalign.text.tokenizer import SPECIALS, UNK

log = logging.getLogger("speechalign.decode")
LN10 = math.log(10.0)
# flashlight-text's KenLM is compiled with KENLM_MAX_ORDER=6: a longer LM would not load in the decoder.
MAX_ORDER = 6


@dataclass(frozen=True)
class LMOptions:
    """LM fusion settings shared by every decoder: total = acoustic + weight * ln P_lm + word_score * chars."""

    path: Path
    weight: float = 0.5
    word_score: float = 0.0

    def describe(self) -> str:
        return f"LM {Path(self.path).name} (weight {self.weight:g}, word score {self.word_score:g})"


class CharLM:
    """A character ARPA/KenLM-binary model indexed by the experiment's token ids."""

    def __init__(self, path: str | Path, tokens: list[str]):
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--lm {path}: no such file (train one with `speechalign train-lm`)")
        order = arpa_order(path)
        if order is not None and order > MAX_ORDER:
            raise ValueError(f"--lm {path}: order {order} exceeds {MAX_ORDER}, the largest the decoder's KenLM loads")
        self.path = path
        self.tokens = list(tokens)
        # Index i of this dictionary is token id i, so the decoder can pass token ids as LM "words".
        self.dictionary = Dictionary(self.tokens)
        try:
            self.kenlm = KenLM(str(path), self.dictionary)
        except Exception as e:  # KenLM raises assorted C++ exceptions for malformed files
            raise ValueError(f"--lm {path}: KenLM cannot load it ({str(e).strip().splitlines()[0][:200]})") from None

    def start(self):
        return self.kenlm.start(False)

    def score(self, state, token: int) -> tuple[object, float]:
        """Next state and ln P(token | state)."""
        nxt, lp10 = self.kenlm.score(state, token)
        return nxt, lp10 * LN10

    def finish(self, state) -> float:
        return self.kenlm.finish(state)[1] * LN10

    def sequence_score(self, ids) -> float:
        """ln P(ids + </s> | <s>)."""
        state, total = self.start(), 0.0
        for t in ids:
            state, lp = self.score(state, int(t))
            total += lp
        return total + self.finish(state)


def arpa_order(path: Path) -> int | None:
    """Highest n-gram order of an ARPA file (``None`` for a KenLM binary, whose order KenLM checks)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"\\data\\" not in head:
        return None
    orders = [int(line.split(b"=")[0].split()[-1]) for line in head.splitlines() if line.startswith(b"ngram ")]
    return max(orders) if orders else None


def find_lmplz() -> str:
    """lmplz from PATH or beside this Python (tools/install_kenlm.sh puts it in .venv/bin)."""
    for cand in (shutil.which("lmplz"), str(Path(sys.executable).parent / "lmplz")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("train-lm needs KenLM's lmplz; build it with tools/install_kenlm.sh "
                       "(no apt package or PyPI wheel ships the binary)")


def lm_sentence(text: str, tokenizer: CharTokenizer | None) -> str:
    """Normalized text as space-separated tokens, exactly as the acoustic model's tokenizer sees it."""
    chars = [c for c in normalize(text)]
    if tokenizer is None:
        return " ".join(chars)
    return " ".join(c if c in tokenizer.token2id and c not in SPECIALS else UNK for c in chars)


def train_char_lm(cuts: list[str | Path], out: str | Path, order: int = 4, tokens: str | Path | None = None,
                  exclude_texts_from: list[str | Path] = (), prune: list[int] | None = None,
                  memory: str = "10%") -> dict:
    """Estimate a modified-Kneser-Ney character n-gram (``lmplz``) on the transcripts of ``cuts`` and
    write it as ARPA to ``out`` (atomically), with ``<out>.json`` naming its sources and counts.

    Cuts whose normalized text is a text of ``exclude_texts_from`` (dev/test manifests) are dropped and
    counted, through the same guard as ``prepare --exclude-texts-from``, so the LM never sees them."""
    from speechalign.data.contamination import PrepReport, drop_contaminated
    from speechalign.data.manifest import iter_cuts

    out = Path(out)
    if not 1 <= order <= MAX_ORDER:
        raise ValueError(f"train-lm: --order {order} must be in 1..{MAX_ORDER} (the decoder's KenLM limit)")
    if prune and (len(prune) > order or any(p < 0 for p in prune)):
        raise ValueError(f"train-lm: --prune {prune} needs at most {order} non-negative thresholds")
    lmplz = find_lmplz()
    tokenizer = CharTokenizer.load(tokens) if tokens else None
    report = PrepReport(out.name.split(".")[0] + "_lm")
    total, lines = 0, []
    for path in map(Path, cuts):
        if not path.is_file():
            raise FileNotFoundError(f"train-lm: --cuts {path}: no such manifest")
        all_cuts = list(iter_cuts(path))
        total += len(all_cuts)
        for cut in drop_contaminated(all_cuts, exclude_texts_from, report):
            sentence = lm_sentence(" ".join(s.text or "" for s in cut.supervisions), tokenizer)
            if sentence:
                lines.append(sentence)
    dropped = len(report.skipped)
    if not lines:
        raise ValueError(f"train-lm: no training text left in {', '.join(map(str, cuts))} "
                         f"({dropped} of {total} cuts dropped as dev/test texts)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".train-lm.") as tmp:
        corpus = Path(tmp) / "text.txt"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        arpa = Path(tmp) / "lm.arpa"
        cmd = [lmplz, "-o", str(order), "--text", str(corpus), "--arpa", str(arpa), "-S", memory, "-T", tmp,
               # Character corpora are small and dense: Kneser-Ney's count-of-counts can be degenerate
               # for the highest orders, where lmplz would otherwise refuse to estimate discounts.
               "--discount_fallback"]
        if prune:
            cmd += ["--prune", *map(str, prune)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            tail = "\n".join(run.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"train-lm: lmplz failed (exit {run.returncode}):\n{tail}")
        os.replace(arpa, out)
    info = {"order": order, "prune": prune or [], "sentences": len(lines), "cuts": total,
            "dropped_dev_test_texts": dropped, "train": [str(p) for p in cuts],
            "excluded_texts_from": [str(p) for p in exclude_texts_from],
            "tokens": str(tokens) if tokens else None, "tool": "kenlm lmplz (modified Kneser-Ney)"}
    meta = out.with_name(out.name + ".json")
    tmp_meta = meta.with_name(f".{meta.name}.tmp")
    tmp_meta.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp_meta, meta)
    if dropped:
        report.kept["lm"] = len(lines)
        report.note(f"LM {out}: {dropped} of {total} training cuts dropped (text is a dev/test text)")
        report.write(out.parent)
    log.info("train-lm: %d-gram on %d sentences -> %s (%d of %d cuts dropped as dev/test texts)",
             order, len(lines), out, dropped, total)
    return info
