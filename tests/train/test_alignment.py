"""model.align: the cross-dialect alignment term (InfoNCE over parallel utterances) and its parts."""

import numpy as np
import pytest
import torch

from speechalign.config import ConfigError, load_config, objective
from speechalign.data.dataset import Batch, collate_audio
from speechalign.models import build_model
from speechalign.retrieval.seqsim import FrameSet, seqsim_block
from speechalign.train.alignment import (CrossDialectAlignment, info_nce, pair_masks, part_frames,
                                         pooled_similarity, soft_seqsim)
from speechalign.train.objectives import build_terms


def test_positives_are_one_sentence_in_another_variety_and_its_own_variety_is_left_out():
    positive, compared = pair_masks(["s1", "s1", "s1", "s2", None, None], ["A", "B", "A", "B", "A", "B"])
    assert positive.nonzero().tolist() == [[0, 1], [1, 0], [1, 2], [2, 1]]
    assert compared[0].tolist() == [False, True, False, True, True, True]    # not itself, not s1 read in A again
    assert compared[4].tolist() == [True, True, True, True, False, True]     # no sentence id: never a positive
    assert not positive[4].any() and not positive[5].any()


def test_info_nce_golden():
    sim = torch.tensor([[1.0, 0.5, -0.5], [0.5, 1.0, 0.0]])
    positive = torch.tensor([[False, True, False], [True, False, False]])
    compared = torch.tensor([[False, True, True], [True, False, True]])
    t = 0.5
    row0 = -(1.0 - np.log(np.exp(1.0) + np.exp(-1.0)))    # 0.5 / t against -0.5 / t
    row1 = -(1.0 - np.log(np.exp(1.0) + np.exp(0.0)))
    assert info_nce(sim, positive, compared, t).item() == pytest.approx(row0 + row1, rel=1e-6)


def test_two_positives_are_averaged():
    sim = torch.tensor([[0.0, 0.2, 0.4, 0.1]])
    positive = torch.tensor([[False, True, True, False]])
    compared = torch.tensor([[False, True, True, True]])
    log_z = np.log(np.exp(0.2) + np.exp(0.4) + np.exp(0.1))
    assert info_nce(sim, positive, compared, 1.0).item() == pytest.approx(-((0.2 - log_z) + (0.4 - log_z)) / 2, rel=1e-6)


def test_each_utterance_is_pooled_over_its_own_frames_of_its_window():
    states = torch.arange(100, dtype=torch.float32)[None, :, None].repeat(2, 1, 1)   # a frame's value is its index
    frames = part_frames(states, torch.tensor([100, 40]), [[(0.0, 1.0), (1.3, 2.0)], [(0.0, 2.0)]], 0.02)
    assert [f[:, 0].tolist() for f in frames] == [list(range(0, 50)), list(range(65, 100)), list(range(0, 40))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_seqsim_tends_to_the_benchmarks_seqsim_and_bounds_it(seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((n, 8)).astype(np.float32) for n in (5, 9, 3, 7)]
    hard = seqsim_block(FrameSet.from_list(arrays), FrameSet.from_list(arrays))["f1"]
    frames = [torch.from_numpy(a) for a in arrays]
    rows = torch.arange(4)
    assert soft_seqsim(frames, rows, 1e-4).numpy() == pytest.approx(hard, abs=1e-3)
    soft = soft_seqsim(frames, rows, 0.1).numpy()
    assert (soft >= hard - 1e-5).all() and (soft <= hard + 0.1 * np.log(9) + 1e-5).all()


def test_strided_seqsim_averages_frames_in_groups():
    frames = [torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0],
                                                                              [0.0, 1.0]])]
    # groups of 2: (1,0) then (0,1) in both: SeqSim 1; frame by frame the first has one (0,1) in three
    assert soft_seqsim(frames, torch.tensor([0]), 1e-4, stride=2)[0, 1].item() == pytest.approx(1.0, abs=1e-4)
    assert soft_seqsim([frames[0], frames[1][:2]], torch.tensor([0]), 1e-4, stride=2)[0, 1].item() == \
        pytest.approx(2 / 3, abs=1e-4)    # (1,0),(0,1) against (1,0): precision 1/2, recall 1


def tones(sentence: int, variety: int, rng) -> np.ndarray:
    """A planted 'sentence' (three tones of its own) read in a 'variety' (all pitches x1.6, another timbre)."""
    t = np.arange(3200) / 16000
    notes = [300 + 110 * ((sentence * 3 + j * 5) % 11) for j in range(3)]
    wave = np.sin if variety == 0 else (lambda x: np.sign(np.sin(x)) * 0.6)
    x = np.concatenate([wave(2 * np.pi * f * (1.6 if variety else 1.0) * t) for f in notes]) * 0.3
    return (x + 0.01 * rng.standard_normal(len(x))).astype(np.float32)


def pooled_r1(encoder, wav, lens, layer, n) -> float:
    """Variety 0 -> variety 1 retrieval of the n planted sentences by cosine of mean-pooled states."""
    with torch.no_grad():
        enc = encoder(wav, lens)
        frames = part_frames(enc.hidden_states[layer], enc.speech_lengths, [[(0.0, int(m) / 16000)] for m in lens],
                             encoder.frame_shift)
        sim = pooled_similarity(frames, torch.arange(2 * n))
    return float((sim[:n, n:].argmax(1) == torch.arange(n)).float().mean())


@pytest.mark.parametrize("kind", ["pooled", "seqsim"])
def test_on_planted_parallel_data_the_loss_falls_and_pooled_r1_rises(kind):
    n = 8
    rng = np.random.default_rng(0)
    wav, lens = collate_audio([tones(s, v, rng) for v in (0, 1) for s in range(n)])
    cfg = load_config(None, ["model.encoder=conformer", "model.conformer={d_model: 32, num_layers: 2, num_heads: 2, "
                             "ffn_dim: 64, kernel_size: 7}", "data.parallel=2",
                             f"model.align={{kind: {kind}, layer: 2, weight: 1.0, temperature: 0.1}}"])
    torch.manual_seed(0)
    model = build_model(cfg, 10)
    term, = build_terms(cfg, model)
    batch = Batch(wav, lens, [[]] * 2 * n, [f"u{i}" for i in range(2 * n)], ["A"] * n + ["B"] * n, [""] * 2 * n,
                  part_spans=[[(0.0, int(m) / 16000)] for m in lens], part_sentences=[[f"s{s}"] for s in range(n)] * 2,
                  part_dialects=[["A"]] * n + [["B"]] * n)
    before = pooled_r1(model.encoder.eval(), wav, lens, 2, n)
    optimizer = torch.optim.Adam(model.encoder.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        model.encoder.train()
        loss = term({"encoder": model.encoder(wav, lens)}, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    after = pooled_r1(model.encoder.eval(), wav, lens, 2, n)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert before < 0.6 and after == 1.0


def test_a_batch_without_a_parallel_pair_adds_nothing():
    term = CrossDialectAlignment("pooled", 1.0, 1, 0.1, 0.05, 1, 0.02)
    enc = type("Enc", (), {"hidden_states": [torch.zeros(2, 50, 4)] * 2, "speech_lengths": torch.tensor([50, 50])})
    batch = Batch(torch.zeros(2, 16000), torch.tensor([16000, 16000]), [[], []], ["a", "b"], ["A", "A"], ["", ""],
                  part_spans=[[(0.0, 1.0)], [(0.0, 1.0)]], part_sentences=[["s1"], ["s2"]], part_dialects=[["A"], ["B"]])
    assert term({"encoder": enc}, batch) is None


def test_config_asks_for_parallel_batches_and_valid_values():
    with pytest.raises(ConfigError, match="set data.parallel"):
        load_config(None, ["model.align.kind=pooled"])
    with pytest.raises(ConfigError, match="model.align.kind"):
        load_config(None, ["model.align.kind=contrastive", "data.parallel=2"])
    with pytest.raises(ConfigError, match="model.align: expected"):
        load_config(None, ["model.align={kind: seqsim, temperature: 0}", "data.parallel=2"])
    with pytest.raises(ConfigError, match="data.parallel: expected"):
        load_config(None, ["data.parallel=1"])
    with pytest.raises(ConfigError, match="data.pack.group=mixed"):
        load_config(None, ["data.parallel=2", "data.pack={window: 30, group: variety}", "data.max_utt_duration=20"])


def test_a_layer_the_encoder_does_not_have_is_refused():
    cfg = load_config(None, ["model.conformer={d_model: 32, num_layers: 2, num_heads: 2, ffn_dim: 64}",
                             "data.parallel=2", "model.align={kind: pooled, layer: 3}"])
    with pytest.raises(ValueError, match="layer=3: the encoder has layers 0 .its input. to 2"):
        build_terms(cfg, build_model(cfg, 10))


def test_the_objective_names_the_term_and_its_data():
    assert objective(load_config(None)) == "ASR-only"
    cfg = load_config(None, ["data.train=[{cuts: [d/goo-gi_cuts_train.jsonl.gz]}, {cuts: [d/lan-lai_cuts_train.jsonl.gz]}]",
                             "data.parallel=2", "model.align={kind: seqsim, layer: 4, weight: 0.5}"])
    assert objective(cfg) == ("not ASR-only: cross-dialect alignment (seqsim InfoNCE at layer 4, weight 0.5) on "
                              "parallel sentences of goo-gi+lan-lai, 2 varieties per sentence")
