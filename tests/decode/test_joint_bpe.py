"""joint_beam across vocabularies: a byte-level BPE decoder with a character CTC head. The search must
score exactly (1 - w) * log P_att + w * log P_ctc(characters spelled), whether a token spells part of a
character, one, or several."""

import itertools
import math

import torch

from speechalign.decode.joint_bpe import joint_beam_bpe

CTC_TOKENS = ["<blank>", "<unk>", "<sos/eos>", "甲", "乙"]
JIA, YI = 3, 4
# BPE pieces: 甲 is three UTF-8 bytes, split over two tokens; 乙 is one token; 甲乙 is one token too.
PIECES = ["甲".encode()[:2], "甲".encode()[2:], "乙".encode(), "甲乙".encode()]
EOS = len(PIECES)
PROMPT = [EOS + 1]


class ByteVocab:
    prefix, eos = PROMPT, EOS

    def decode(self, ids):
        return b"".join(PIECES[i] for i in ids if i < EOS).decode("utf-8", errors="replace")

    def encode(self, text):
        data, out = text.encode(), []
        while data:
            i = max((i for i, p in enumerate(PIECES) if data.startswith(p)), key=lambda i: len(PIECES[i]))
            out.append(i)
            data = data[len(PIECES[i]):]
        return out


class StubDecoder:
    """Next-token log-probabilities that ignore audio: (V,) the same after any history, or (V + 2, V)
    indexed by the last input token (the prompt's included)."""
    max_len, allowed = 64, None

    def __init__(self, logp):
        self.logp = logp

    def memory_kv(self, memory):
        return [(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))]

    def next_token_logits(self, inp, kv, pad):
        if self.logp.dim() == 2:
            return self.logp[inp[:, -1]].clone()
        return self.logp.expand(inp.shape[0], -1).clone()


class StubModel:
    shares_ctc_vocab = False
    att_eos, att_prefix = EOS, PROMPT

    def __init__(self, logp):
        self.decoder, self.att_vocab = StubDecoder(logp), ByteVocab()


def to_text(ids):
    return "".join(CTC_TOKENS[i] for i in ids if i >= 3)


def from_text(text):
    return [CTC_TOKENS.index(c) if c in CTC_TOKENS else 1 for c in text]   # as CharTokenizer: <unk>


def ctc_posteriors(seed, frames=6):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(frames, len(CTC_TOKENS), generator=g)).log_softmax(-1)


def joint_score(tokens, att, lp, w):
    """The objective, computed independently: decoder log-probs summed, CTC by torch's ctc_loss."""
    text = ByteVocab().decode(tokens)
    if text.endswith("\ufffd"):                 # ends inside a character (invalid bytes before: <unk>)
        return -math.inf
    target = torch.tensor([from_text(text)], dtype=torch.long)
    nll = torch.nn.functional.ctc_loss(lp[:, None], target, torch.tensor([lp.shape[0]]),
                                       torch.tensor([target.shape[1]]), reduction="sum", zero_infinity=False)
    return (1 - w) * float(sum(att[t] for t in tokens) + att[EOS]) - w * float(nll)


def test_finds_the_best_sequence_of_an_exhaustive_search():
    for seed in range(6):
        lp = ctc_posteriors(seed)
        att = torch.randn(EOS + 1, generator=torch.Generator().manual_seed(100 + seed)).log_softmax(-1)
        w = 0.5
        # max_len 4 ends hypotheses of up to 3 tokens; a beam wider than every step's candidates is exhaustive
        seqs = [s for n in range(4) for s in itertools.product(range(EOS), repeat=n)]
        best = max(seqs, key=lambda s: joint_score(s, att, lp, w))
        got = joint_beam_bpe(StubModel(att), lp, torch.zeros(6, 2), beam=400, ctc_weight=w,
                             to_text=to_text, from_text=from_text, max_len=4)
        assert math.isclose(joint_score(got, att, lp, w), joint_score(best, att, lp, w), rel_tol=1e-4), seed


def test_ctc_picks_the_character_split_over_two_tokens():
    att = torch.full((EOS + 1,), -1.0)
    att[2] = 0.0                                   # the decoder prefers 乙 ...
    att = att.log_softmax(-1)
    lp = torch.full((3, len(CTC_TOKENS)), -30.0)
    lp[0, JIA], lp[1, 0], lp[2, 0] = 0.0, 0.0, 0.0  # ... CTC is sure of 甲, spelled by tokens 0 and 1
    lp = lp.log_softmax(-1)
    args = dict(to_text=to_text, from_text=from_text)
    assert joint_beam_bpe(StubModel(att), lp, torch.zeros(3, 2), beam=4, ctc_weight=0.7, **args) == [0, 1]
    assert joint_beam_bpe(StubModel(att), lp, torch.zeros(3, 2), beam=4, ctc_weight=0.0, **args)[0] == 2


def test_never_ends_inside_a_character():
    att = torch.full((EOS + 2, EOS + 1), -8.0)
    att[PROMPT[0], 0], att[PROMPT[0], 2] = 0.0, -3.0   # it starts with the first half of 甲, or with 乙 ...
    att[0, EOS], att[2, EOS] = 0.0, 0.0               # ... and would end at once after either
    lp = torch.zeros(4, len(CTC_TOKENS)).log_softmax(-1)   # CTC has no opinion
    out = joint_beam_bpe(StubModel(att.log_softmax(-1)), lp, torch.zeros(4, 2), beam=3, ctc_weight=0.3,
                         to_text=to_text, from_text=from_text, max_len=3)
    assert out == [2]                                 # not [0]: half a character


def test_proposes_no_token_for_the_ctc_tokenizers_specials():
    from speechalign.decode.joint_bpe import _ctc_tokens

    asked = []

    class RecordingVocab(ByteVocab):
        def encode(self, text):
            asked.append(text)
            return super().encode(text)

    model = StubModel(torch.zeros(EOS + 1))
    model.att_vocab = RecordingVocab()
    lp = torch.full((2, len(CTC_TOKENS)), -30.0)
    lp[0, 1], lp[1, JIA] = 0.0, 0.0                # <unk> is as likely as 甲
    def render(ids):   # as CharTokenizer.decode, which writes <unk> out
        return "".join(CTC_TOKENS[i] for i in ids if i >= 3 or i == 1)

    assert _ctc_tokens(model, lp.log_softmax(-1), render, 0.05, blank=0) == [0]   # 甲's first BPE token
    assert asked == ["甲"]


def test_decodes_after_the_prefix_it_is_given():
    att = torch.full((EOS + 2, EOS + 1), -8.0)
    att[PROMPT[0], 2], att[2, EOS] = 0.0, 0.0        # after the model's prompt: 乙
    att[EOS, 3], att[3, EOS] = 0.0, 0.0              # after another prefix (ending in EOS's id): 甲乙
    lp = torch.zeros(4, len(CTC_TOKENS)).log_softmax(-1)
    model, args = StubModel(att.log_softmax(-1)), dict(to_text=to_text, from_text=from_text, max_len=3)
    assert joint_beam_bpe(model, lp, torch.zeros(4, 2), beam=3, ctc_weight=0.3, **args) == [2]
    assert joint_beam_bpe(model, lp, torch.zeros(4, 2), beam=3, ctc_weight=0.3, prefix=[EOS], **args) == [3]
