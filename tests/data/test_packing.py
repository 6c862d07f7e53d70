"""Packed training windows (data.pack): the plan on planted cuts, the batch the loader builds from it, and
bad items leaving their window."""

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

from speechalign.config import ConfigError, load_config
from speechalign.data.dataset import SpeechDataset
from speechalign.data.manifest import load_cuts
from speechalign.data.packing import TargetBudget, WindowPacker, join_texts, pack_in_order
from tests.conftest import make_tone_corpus


def planted(durations, varieties=("A", "B", "C")) -> list[MonoCut]:
    cuts = []
    for i, d in enumerate(durations):
        rec = Recording(id=f"r{i}", sources=[], sampling_rate=16000, num_samples=round(d * 16000), duration=d)
        sup = SupervisionSegment(id=f"c{i}", recording_id=rec.id, start=0, duration=d, text=f"t{i}",
                                 language=varieties[i % len(varieties)])
        cuts.append(MonoCut(id=f"c{i}", start=0, duration=d, channel=0, recording=rec, supervisions=[sup]))
    return cuts


durations = st.lists(st.floats(0.3, 20.0), min_size=1, max_size=80)


@settings(max_examples=60, deadline=None)
@given(durations, st.floats(0.0, 1.0), st.sampled_from(["mixed", "variety"]), st.integers(0, 5),
       st.sampled_from([None, 12, 40]))
def test_every_cut_once_in_order_and_every_window_within_its_length(ds, share, group, seed, limit):
    cuts = planted(ds)
    budget = TargetBudget(limit) if limit else None
    windows = WindowPacker(30.0, 0.3, share, group, seed, budget).plan(cuts)
    assert sorted(c.id for w in windows for c in w.cuts) == sorted(c.id for c in cuts)
    position = {c.id: i for i, c in enumerate(cuts)}
    for w in windows:
        order = [position[c.id] for c in w.cuts]
        assert order == sorted(order)                      # a window keeps the sampled order
        seconds = sum(c.duration for c in w.cuts) + 0.3 * (len(w.cuts) - 1)
        assert seconds <= 30.0 + 1e-9 and w.seconds == pytest.approx(seconds)
        assert not w.single or len(w.cuts) == 1
        if budget and len(w.cuts) > 1:   # the decoder's positions
            assert sum(len(c.supervisions[0].text) for c in w.cuts) <= limit
        if group == "variety":
            assert len({c.supervisions[0].language for c in w.cuts}) == 1


@settings(max_examples=30, deadline=None)
@given(durations, st.floats(0.0, 1.0), st.integers(0, 5))
def test_a_variety_kept_apart_shares_windows_only_with_itself(ds, share, seed):
    cuts = planted(ds)
    windows = WindowPacker(30.0, 0.3, share, "mixed", seed, apart=("A",)).plan(cuts)
    assert sorted(c.id for w in windows for c in w.cuts) == sorted(c.id for c in cuts)
    for w in windows:
        varieties = {c.supervisions[0].language for c in w.cuts}
        assert "A" not in varieties or varieties == {"A"}
    mixed = WindowPacker(30.0, 0.3, 0.0, "mixed", 0, apart=("A",)).plan(planted([1.0] * 30))
    assert sorted(sorted({c.supervisions[0].language for c in w.cuts}) for w in mixed) == [["A"], ["B", "C"]]


def test_same_seed_same_windows_and_another_seed_other_singles():
    cuts = planted(np.random.default_rng(0).uniform(1, 5, 400))
    plan = lambda seed: [[c.id for c in w.cuts] for w in WindowPacker(30.0, 0.3, 0.3, "mixed", seed).plan(cuts)]
    assert plan(7) == plan(7) and plan(7) != plan(8)


@pytest.mark.parametrize("share", [0.0, 0.1, 0.5])
def test_single_share_is_the_share_of_windows(share):
    cuts = planted(np.random.default_rng(1).uniform(1, 5, 3000))
    windows = WindowPacker(30.0, 0.3, share, "mixed", 3).plan(cuts)
    singles = sum(w.single for w in windows) / len(windows)
    assert singles == pytest.approx(share, abs=0.05)   # ~580 windows: one standard error is 0.02
    packed = [w for w in windows if not w.single]
    # first fit fills a window to within one short cut of its length
    assert np.mean([w.seconds for w in packed]) > 25.0


@pytest.mark.parametrize("share", [0.2, 0.5])
def test_a_timestamp_share_marks_that_share_of_windows_and_leaves_the_windows_alone(share):
    cuts = planted(np.random.default_rng(2).uniform(1, 5, 3000))
    plain = WindowPacker(30.0, 0.3, 0.1, "mixed", 3).plan(cuts)
    timed = WindowPacker(30.0, 0.3, 0.1, "mixed", 3, timestamp_share=share).plan(cuts)
    assert [[c.id for c in w.cuts] for w in timed] == [[c.id for c in w.cuts] for w in plain]
    assert [w.single for w in timed] == [w.single for w in plain] and not any(w.timestamps for w in plain)
    assert sum(w.timestamps for w in timed) / len(timed) == pytest.approx(share, abs=0.06)
    again = WindowPacker(30.0, 0.3, 0.1, "mixed", 3, timestamp_share=share).plan(cuts)
    assert [w.timestamps for w in again] == [w.timestamps for w in timed]


def test_a_timestamp_budget_counts_two_tokens_per_cut():
    cuts = planted([1.0] * 12)               # texts t0..t11: 2 or 3 characters
    windows = WindowPacker(30.0, 0.3, budget=TargetBudget(10, per_cut=2)).plan(cuts)
    assert all(sum(2 + len(c.supervisions[0].text) for c in w.cuts) <= 10 for w in windows)
    assert [len(w.cuts) for w in windows][:2] == [2, 2]


def test_a_cut_longer_than_the_window_is_an_error_naming_it():
    with pytest.raises(ValueError, match="cut c1 of 31.00 s does not fit a 30-s window"):
        WindowPacker(30.0).plan(planted([2.0, 31.0]))


def test_join_texts_adds_no_space_between_chinese_but_keeps_latin_words_apart():
    assert join_texts(["我食饭", "伊去学校"]) == "我食饭伊去学校"
    assert join_texts(["ok", "good"]) == "ok good" and join_texts(["买了3", "4个"]) == "买了3 4个"
    assert join_texts(["你好", "ok"]) == "你好ok"


def test_pack_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="data.pack.group"):
        load_config(None, ["data.pack={window: 30, group: speaker}"])
    with pytest.raises(ConfigError, match="data.max_utt_duration=20.0 exceeds data.pack.window=10"):
        load_config(None, ["data.pack.window=10"])
    with pytest.raises(ConfigError, match="set data.features=audio"):
        load_config(None, ["data.pack.window=30", "data.features=loader"])
    with pytest.raises(ConfigError, match="data.pack.timestamp_share: expected a share"):
        load_config(None, ["data.pack={window: 30, timestamp_share: 1.5}"])
    with pytest.raises(ConfigError, match="data.pack.timestamp_share: timestamp tokens are Whisper's"):
        load_config(None, ["data.pack={window: 30, timestamp_share: 0.5}"])   # no pretrained decoder
    with pytest.raises(ConfigError, match="data.pack.group=variety"):
        load_config(None, ["data.pack.window=30", "model.decoder.pretrained=x", "model.decoder.prompt=variety"])
    with pytest.raises(ConfigError, match="data.pack.apart: only mixed windows"):
        load_config(None, ["data.pack={window: 30, group: variety, apart: [Mandarin]}"])


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("tones"), n_train=12, n_dev=2)


def test_a_packed_batch_is_each_window_s_audio_and_texts_joined(tones):
    cuts = list(load_cuts(tones["train"]))[:9]
    packer = WindowPacker(3.5, 0.25, 0.0, "mixed", 0)
    windows = packer.plan(cuts)
    assert 1 < len(windows) < len(cuts)
    batch = SpeechDataset(packer=packer)[CutSet.from_cuts(cuts)]
    assert batch.ids == ["+".join(c.id for c in w.cuts) for w in windows]
    assert batch.texts == ["".join(c.supervisions[0].text for c in w.cuts) for w in windows]
    assert batch.parts == [[c.supervisions[0].text for c in w.cuts] for w in windows]
    assert batch.seconds == pytest.approx(sum(c.duration for c in cuts))
    for i, w in enumerate(windows):
        gap = np.zeros(4000, dtype=np.float32)
        parts = [sf.read(c.recording.sources[0].source, dtype="float32")[0] for c in w.cuts]
        by_hand = np.concatenate([p for part in parts for p in (part, gap)][:-1])
        n = int(batch.wav_lens[i])
        assert n == len(by_hand) and np.array_equal(batch.wav[i, :n].numpy(), by_hand)
        assert batch.dialects[i] == (w.cuts[0].supervisions[0].language
                                     if len({c.supervisions[0].language for c in w.cuts}) == 1 else "mixed")


def test_a_timestamped_window_carries_each_cut_s_span_and_others_none(tones):
    cuts = list(load_cuts(tones["train"]))[:9]
    packer = WindowPacker(3.5, 0.25, 0.0, "mixed", 0, timestamp_share=0.5)
    windows = packer.plan(cuts)
    assert {w.timestamps for w in windows} == {True, False}
    batch = SpeechDataset(packer=packer)[CutSet.from_cuts(cuts)]
    for w, spans in zip(windows, batch.spans, strict=True):
        if not w.timestamps:
            assert spans is None
            continue
        starts = np.cumsum([0.0] + [c.duration + 0.25 for c in w.cuts[:-1]])
        expected = [(a, a + c.duration) for a, c in zip(starts, w.cuts)]
        assert [t for span in spans for t in span] == pytest.approx([t for span in expected for t in span])


def test_an_unreadable_cut_leaves_its_window_with_a_count(tones, tmp_path):
    cuts = list(load_cuts(tones["train"]))[:6]
    cuts[1].recording.sources[0].source = str(tmp_path / "gone.wav")
    packer = WindowPacker(30.0, 0.3, 0.0, "mixed", 0)
    batch = SpeechDataset(packer=packer)[CutSet.from_cuts(cuts)]
    assert [b.cut_id for b in batch.bad] == [cuts[1].id] and "not found" in batch.bad[0].reason
    assert batch.ids == ["+".join(c.id for c in cuts if c is not cuts[1])]
    assert batch.texts == ["".join(c.supervisions[0].text for c in cuts if c is not cuts[1])]


@given(st.lists(st.floats(0.1, 12.0), min_size=1, max_size=40), st.floats(0.0, 2.0))
def test_pack_in_order_keeps_order_and_fills_windows(durations, gap):
    windows = pack_in_order(durations, 30.0, gap)
    assert [i for w in windows for i in w] == list(range(len(durations)))   # every part once, in order
    for k, w in enumerate(windows):
        assert sum(durations[i] for i in w) + gap * (len(w) - 1) <= 30.0 + 1e-6
        if k + 1 < len(windows):   # a window closes only when the next part does not fit
            nxt = windows[k + 1][0]
            assert sum(durations[i] for i in w) + gap * len(w) + durations[nxt] > 30.0


def test_pack_in_order_names_a_part_too_long():
    with pytest.raises(ValueError, match="part 1 of 31.00 s"):
        pack_in_order([2.0, 31.0], 30.0, 0.3)
