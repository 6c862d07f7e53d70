"""Library CTC beam search (torchaudio/flashlight) against the Python reference, character-LM fusion
on a planted ambiguity, train-lm (KenLM lmplz) and its dev/test guard, backend selection."""

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lhotse import CutSet
from lhotse.testing.dummies import dummy_cut, dummy_supervision

from speechalign.decode.ctc import ctc_prefix_beam
from speechalign.decode.ctc_beam import CtcBeamSearch, select_backend
from speechalign.decode.lm import CharLM, LMOptions, train_char_lm

CHARS = "甲乙丙丁戊己庚辛壬癸"
TOKENS = ["<blank>", "<unk>", "<sos/eos>", *CHARS]


def peaky(rng, T: int, V: int = len(TOKENS)) -> torch.Tensor:
    """Trained-model-like posteriors: one confident label per frame (mostly blank), some runner-up mass."""
    x = rng.standard_normal((T, V)) * 1.5
    labels = np.where(rng.random(T) < 0.6, 0, rng.integers(3, V, T))
    x[np.arange(T), labels] += 7.0
    x[:, 2] = -40.0          # <sos/eos>: never emitted by a trained CTC head
    return torch.from_numpy(x).float().log_softmax(-1)


def test_library_search_equals_python_reference_incl_nbest():
    rng = np.random.default_rng(1)
    search = CtcBeamSearch(TOKENS, beam=10, nbest=3, force_cpu=True)
    mats = [peaky(rng, T) for T in (20, 35, 50, 35, 20, 50)]
    lengths = torch.tensor([m.shape[0] for m in mats])
    batch = torch.nn.utils.rnn.pad_sequence(mats, batch_first=True)
    got = search(batch, lengths)
    for lp, hyps in zip(mats, got):
        ref = ctc_prefix_beam(lp.double().numpy(), beam=10)
        assert [h.tokens for h in hyps] == [t for t, _ in ref[:3]]
        # Flashlight's beam holds (prefix, ends-in-blank) states, the reference's whole prefixes, so the
        # flashlight sum can miss a little of a prefix's mass; the ranking is what must agree.
        assert [h.ctc for h in hyps] == pytest.approx([s for _, s in ref[:3]], abs=0.15)


def test_library_search_sums_alignments_like_the_reference():
    # p(blank)=0.6, p(甲)=0.4 on two frames: best path says "", the summed prefix probability "甲" (0.64).
    lp = torch.full((2, len(TOKENS)), -50.0)
    lp[:, 0], lp[:, 3] = math.log(0.6), math.log(0.4)
    hyps = CtcBeamSearch(TOKENS, beam=4, nbest=2, force_cpu=True)(lp[None], torch.tensor([2]))[0]
    assert [h.tokens for h in hyps] == [(3,), ()]
    assert hyps[0].ctc == pytest.approx(math.log(0.64), abs=1e-4)


def write_arpa(path: Path) -> Path:
    """Bigram: after 甲, 乙 is 100x likelier than 丙 (log10 -0.05 vs -2.05); unigrams otherwise flat."""
    uni = {"<s>": (-99.0, -0.3), "</s>": (-1.0, 0.0), "<unk>": (-3.0, 0.0)}
    uni.update({c: (-1.0, -0.3) for c in CHARS})
    bi = {("<s>", "甲"): -0.3, ("甲", "乙"): -0.05, ("甲", "丙"): -2.05, ("乙", "</s>"): -0.1, ("丙", "</s>"): -0.1}
    lines = ["\\data\\", f"ngram 1={len(uni)}", f"ngram 2={len(bi)}", "", "\\1-grams:"]
    lines += [f"{p}\t{w}\t{b}" for w, (p, b) in uni.items()]
    lines += ["", "\\2-grams:"] + [f"{p}\t{a} {b}" for (a, b), p in bi.items()] + ["", "\\end\\", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def ambiguous() -> torch.Tensor:
    """甲 then a frame where 丙 is slightly likelier than 乙 (acoustically a homophone pair)."""
    lp = torch.full((4, len(TOKENS)), -30.0)
    lp[0, 3] = 0.0
    lp[1, 0] = 0.0
    lp[2, 4], lp[2, 5] = math.log(0.45), math.log(0.55)    # 乙 0.45, 丙 0.55
    lp[3, 0] = 0.0
    return lp.log_softmax(-1)


def test_lm_fusion_turns_the_homophone_toward_the_lm(tmp_path):
    arpa = write_arpa(tmp_path / "bi.arpa")
    lp = ambiguous()
    plain = CtcBeamSearch(TOKENS, beam=5, force_cpu=True)(lp[None], torch.tensor([4]))[0][0]
    assert plain.tokens == (3, 5)                                         # 甲丙: acoustics alone
    fused = CtcBeamSearch(TOKENS, beam=5, lm=LMOptions(arpa, 0.5), force_cpu=True)(lp[None], torch.tensor([4]))[0][0]
    assert fused.tokens == (3, 4)                                         # 甲乙: the LM's choice
    lm = CharLM(arpa, TOKENS)
    expected_lm = (-0.3 - 0.05 - 0.1) * math.log(10)                     # <s> 甲, 甲 乙, 乙 </s>
    assert fused.lm == pytest.approx(expected_lm, abs=1e-4)
    assert lm.sequence_score([3, 4]) == pytest.approx(expected_lm, abs=1e-4)
    assert fused.score == pytest.approx(fused.ctc + 0.5 * fused.lm, abs=1e-3)
    # A word score is a per-character bonus: the fused total grows by exactly 2 * 1.5 for two characters.
    bonus = CtcBeamSearch(TOKENS, beam=5, lm=LMOptions(arpa, 0.5, 1.5), force_cpu=True)(lp[None], torch.tensor([4]))[0][0]
    assert bonus.tokens == (3, 4) and bonus.score == pytest.approx(fused.score + 3.0, abs=1e-3)


def test_char_lm_rejects_missing_and_too_long_models(tmp_path):
    with pytest.raises(FileNotFoundError, match="no.arpa"):
        CharLM(tmp_path / "no.arpa", TOKENS)
    deep = tmp_path / "deep.arpa"
    deep.write_text("\\data\\\nngram 1=3\nngram 7=1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="order 7"):
        CharLM(deep, TOKENS)


def test_backend_selection(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_backend("cuda:0", None) == "cuda"
    assert select_backend("cuda:0", None, force_cpu=True) == "cpu"
    assert select_backend("cuda", LMOptions(Path("x.arpa"))) == "cpu"   # the GPU decoder has no LM fusion
    assert select_backend("cpu", None) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_backend("cuda", None) == "cpu"


def manifest(path: Path, texts: list[str]) -> Path:
    cuts = []
    for i, text in enumerate(texts):
        cut = dummy_cut(i, supervisions=[dummy_supervision(i, text=text)])
        cut.id = cut.supervisions[0].recording_id = f"{path.stem}-{i}"
        cuts.append(cut)
    CutSet.from_cuts(cuts).to_file(path)
    return path


lmplz = shutil.which("lmplz") or (str(Path(sys.executable).parent / "lmplz")
                                  if (Path(sys.executable).parent / "lmplz").exists() else None)


@pytest.mark.skipif(lmplz is None, reason="KenLM lmplz not built (tools/install_kenlm.sh)")
def test_train_lm_writes_arpa_the_decoder_reads_and_drops_dev_test_texts(tmp_path):
    train = manifest(tmp_path / "train.jsonl.gz", ["甲乙丙丁", "甲乙丙丁", "甲乙戊", "乙丙丁戊", "庚辛壬癸。", "己庚辛"])
    test = manifest(tmp_path / "test.jsonl.gz", ["庚辛壬癸"])            # normalized equal to a training text
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"{t} {i}\n" for i, t in enumerate(TOKENS[:-1])), encoding="utf-8")  # no 癸
    out = tmp_path / "lm" / "char3.arpa"
    info = train_char_lm([train], out, order=3, tokens=tokens, exclude_texts_from=[test])
    assert info["dropped_dev_test_texts"] == 1 and info["sentences"] == 5
    assert "庚辛壬" not in out.read_text(encoding="utf-8")                # the test sentence never reached the LM
    report = (tmp_path / "lm" / "char3_lm_prep_report.txt").read_text(encoding="utf-8")
    assert report.count("\nskip\t") == 1 and "kept lm: 5" in report
    lm = CharLM(out, TOKENS)
    ids = {c: TOKENS.index(c) for c in CHARS}
    seen = lm.sequence_score([ids[c] for c in "甲乙丙丁"])
    unseen = lm.sequence_score([ids[c] for c in "丁丙乙甲"])
    assert seen > unseen + 2.0
    with pytest.raises(ValueError, match="order 7"):
        train_char_lm([train], out, order=7)
