import shutil

import numpy as np
import pytest
import soundfile as sf

from data_prep.common import PrepReport
from data_prep.synth import (RENDERINGS, candidate_sentences, common_characters_only, hakka_syllable, prepare_synth,
                              renderings_for, select_sentences, split_sentences)
from speechalign.data.manifest import cut_meta, load_cuts
from speechalign.text import is_han

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")


def test_sentence_filter_keeps_han_only_5_to_20():
    sentences = candidate_sentences()
    assert len(sentences) > 5000 and len(set(sentences)) == len(sentences)
    assert all(5 <= len(s) <= 20 and all(is_han(c) for c in s) for s in sentences)


def test_common_characters_only_keeps_sentences_of_the_top_characters():
    pool = ["我去街市", "我去學校", "佢去街市", "我哋去飲茶", "饕餮"]   # 去 4, 我 3, 街 2, 市 2, then 1 each
    assert common_characters_only(pool, 4) == ["我去街市"]
    assert common_characters_only(pool, 5) == ["我去街市"]   # 学 (normalized 學) first among the ties
    assert common_characters_only(pool, 6) == ["我去街市", "我去學校"]
    assert common_characters_only(pool, 7) == ["我去街市", "我去學校", "佢去街市"]
    assert common_characters_only(pool, 100) == pool


def test_vocabulary_size_bounds_the_characters_and_names_the_shortfall():
    chosen = select_sentences(200, seed=0, report=PrepReport("synth"), vocabulary_size=300)
    assert len(chosen) == 200 and len({ch for s in chosen for ch in s.simplified}) <= 300
    with pytest.raises(ValueError, match="within the 50 most frequent characters, 4000 requested"):
        select_sentences(4000, seed=0, report=PrepReport("synth"), vocabulary_size=50)


@pytest.mark.parametrize("thp, pfs", [("tien24", "thien1"), ("gung24", "kung1"), ("log5", "lok8"),
                                      ("siid5", "siit8"), ("ngi11", "ngi5"), ("zung24", "tsung1"),
                                      ("ngid2", "ngit4"), ("ho31", "ho2"), ("fan55", "fan3")])
def test_hakka_pinyin_to_espeak_spelling(thp, pfs):
    assert hakka_syllable(thp) == pfs


def test_splits_are_sentence_disjoint_and_deterministic():
    items = list(range(100))
    a = split_sentences(items, 0.1, 0.2, seed=3)
    assert [len(a[k]) for k in ("train", "dev", "test")] == [70, 10, 20]
    assert set(a["train"]).isdisjoint(a["test"]) and set(a["dev"]).isdisjoint(a["test"])
    assert a == split_sentences(items, 0.1, 0.2, seed=3) and a != split_sentences(items, 0.1, 0.2, seed=4)


def test_per_variety_training_renderings():
    picks = [renderings_for(f"s{i:05d}", "train", "per-variety", seed=0) for i in range(200)]
    for rs in picks:
        assert sorted(RENDERINGS[r][0] for r in rs) == ["Cantonese", "Hakka", "Mandarin"]
    mandarin = [r for rs in picks for r in rs if RENDERINGS[r][0] == "Mandarin"]
    assert 60 < mandarin.count("cmn") < 140 and set(mandarin) == {"cmn", "cmn-pinyin"}
    assert picks == [renderings_for(f"s{i:05d}", "train", "per-variety", seed=0) for i in range(200)]
    assert renderings_for("s00001", "test", "per-variety", seed=0) == list(RENDERINGS)
    assert renderings_for("s00001", "train", "all", seed=0) == list(RENDERINGS)
    with pytest.raises(ValueError, match="per-variety"):
        renderings_for("s00001", "train", "some", seed=0)


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    prepare_synth(out / "audio", out, num_sentences=5, seed=7, dev_fraction=0.2, test_fraction=0.2, num_workers=2)
    return out


@needs_espeak
def test_parallel_varieties_disjoint_splits_valid_audio(synth_run):
    splits = {s: load_cuts(synth_run / f"synth_cuts_{s}.jsonl.gz") for s in ("train", "dev", "test")}
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [12, 4, 4]
    ids = {s: {cut_meta(c)["sentence_id"] for c in cuts} for s, cuts in splits.items()}
    assert ids["train"].isdisjoint(ids["test"]) and ids["dev"].isdisjoint(ids["test"])
    for cuts in splits.values():
        by_sentence = {}
        for c in cuts:
            m = cut_meta(c)
            by_sentence.setdefault(m["sentence_id"], set()).add((m["site"], m["dialect"]))
            audio = c.load_audio()[0]
            assert c.sampling_rate == 16000 and 0.5 < c.duration < 15
            assert np.isfinite(audio).all() and np.abs(audio).max() > 0.05
            assert c.supervisions[0].text and c.supervisions[0].custom["raw_text"]
        for sites in by_sentence.values():
            assert sites == {(r, RENDERINGS[r][0]) for r in RENDERINGS}
    texts = {}
    for c in (c for cuts in splits.values() for c in cuts):
        texts.setdefault(cut_meta(c)["sentence_id"], set()).add(c.supervisions[0].text)
    assert all(len(t) == 1 for t in texts.values())


@needs_espeak
def test_deterministic_and_voices_vary(synth_run, tmp_path):
    prepare_synth(tmp_path / "audio", tmp_path, num_sentences=5, seed=7, dev_fraction=0.2, test_fraction=0.2,
                  num_workers=1)
    a = load_cuts(synth_run / "synth_cuts_train.jsonl.gz")
    b = load_cuts(tmp_path / "synth_cuts_train.jsonl.gz")
    key = lambda c: (c.id, c.supervisions[0].text, c.supervisions[0].custom["variant"], c.supervisions[0].custom["speed"])
    assert sorted(map(key, a)) == sorted(map(key, b))
    x, _ = sf.read(synth_run / "audio" / "yue" / f"{next(iter(a)).id.split('-')[0]}-yue.flac")
    assert len(x) > 0
    all_cuts = [c for s in ("train", "dev", "test") for c in load_cuts(synth_run / f"synth_cuts_{s}.jsonl.gz")]
    for rendering in RENDERINGS:
        voices = {(c.supervisions[0].custom["variant"], c.supervisions[0].custom["speed"])
                  for c in all_cuts if cut_meta(c)["site"] == rendering}
        assert len(voices) > 1, rendering


@needs_espeak
def test_rerun_reuses_audio(synth_run):
    before = {p: p.stat().st_mtime_ns for p in (synth_run / "audio").rglob("*.flac")}
    prepare_synth(synth_run / "audio", synth_run, num_sentences=5, seed=7, dev_fraction=0.2, test_fraction=0.2,
                  num_workers=2)
    assert before == {p: p.stat().st_mtime_ns for p in (synth_run / "audio").rglob("*.flac")}


@needs_espeak
def test_per_variety_training_keeps_parallel_test(tmp_path):
    prepare_synth(tmp_path / "audio", tmp_path, num_sentences=5, seed=7, dev_fraction=0.2, test_fraction=0.2,
                  num_workers=2, train_renderings="per-variety")
    train = load_cuts(tmp_path / "synth_cuts_train.jsonl.gz")
    test = load_cuts(tmp_path / "synth_cuts_test.jsonl.gz")
    assert len(train) == 3 * 3 and len(test) == len(RENDERINGS)
    by_sentence = {}
    for c in train:
        by_sentence.setdefault(cut_meta(c)["sentence_id"], []).append(cut_meta(c)["dialect"])
    assert all(sorted(v) == ["Cantonese", "Hakka", "Mandarin"] for v in by_sentence.values())
