"""joint_beam regression: a token the attention decoder under-ranks is still proposed when CTC is sure
of it (the defect behind joint_beam's high CER), and LM fusion enters joint_beam's score."""

import math

import pytest
import torch

from speechalign.decode.attention import joint_beam
from speechalign.decode.lm import CharLM, LMOptions
from tests.decode.test_ctc_beam_lm import TOKENS, write_arpa

V = len(TOKENS)
JIA, YI, BING = 3, 4, 5


class StubDecoder:
    """Next-token logits that ignore the audio: a fixed preference table (B, L, V)."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    def __call__(self, inp, memory, memory_pad, token_pad):
        return self.logits.expand(inp.shape[0], inp.shape[1], V).clone()


class StubModel:
    shares_ctc_vocab = True
    sos_eos = 2

    def __init__(self, logits: torch.Tensor):
        self.decoder = StubDecoder(logits)


def ctc_frames(*labels: int) -> torch.Tensor:
    lp = torch.full((len(labels), V), -30.0)
    for t, c in enumerate(labels):
        lp[t, c] = 0.0
    return lp.log_softmax(-1)


def test_ctc_certain_token_the_decoder_underranks_is_found():
    logits = torch.zeros(V)
    logits[JIA] = -20.0                   # the decoder all but rules out 甲 ...
    model = StubModel(logits)
    lp = ctc_frames(JIA, 0, 0)            # ... which CTC is certain of
    memory = torch.zeros(3, 4)
    old = joint_beam(model, lp, memory, beam=2, ctc_weight=0.5, ctc_propose=1.0)
    assert old != [JIA]                   # decoder's pre-beam only: 甲 is never a candidate
    assert joint_beam(model, lp, memory, beam=2, ctc_weight=0.5) == [JIA]


def test_lm_fusion_in_joint_beam_picks_the_lm_homophone(tmp_path):
    arpa = write_arpa(tmp_path / "bi.arpa")
    lp = torch.full((4, V), -30.0)
    lp[0, JIA] = 0.0
    lp[1, 0] = 0.0
    lp[2, YI], lp[2, BING] = math.log(0.45), math.log(0.55)
    lp[3, 0] = 0.0
    lp = lp.log_softmax(-1)
    model = StubModel(torch.zeros(V))     # an uninformative decoder: acoustics and LM decide
    memory = torch.zeros(4, 4)
    assert joint_beam(model, lp, memory, beam=4, ctc_weight=0.9) == [JIA, BING]
    lm = (CharLM(arpa, TOKENS), LMOptions(arpa, 0.5))
    assert joint_beam(model, lp, memory, beam=4, ctc_weight=0.9, lm=lm) == [JIA, YI]


def test_joint_beam_rejects_a_bpe_decoder():
    model = StubModel(torch.zeros(V))
    model.shares_ctc_vocab = False
    with pytest.raises(ValueError, match="attention_rescoring"):
        joint_beam(model, ctc_frames(JIA), torch.zeros(1, 4), beam=2, ctc_weight=0.5)
