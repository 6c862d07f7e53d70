import re
from pathlib import Path

import pytest

from data_prep.foochow_idioms import prepare_foochow_idioms
from data_prep.kasu100 import prepare_kasu100, read_cards
from data_prep.tw_hokkien import prepare_tw_hokkien
from speechalign.cli import main
from speechalign.data.manifest import load_cuts, load_mono
from speechalign.text import normalize
from tests.fake_corpora import FOOCHOW_ENTRIES, foochow_idioms_tree, hokkien_tree, kasu100_tree

REAL = Path("/work/shared/data")
PUA = re.compile("[\ue000-\uf8ff]")


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """A tw-hokkien test manifest holding 祝恁一路平安。 (also in both fake corpora)."""
    root = tmp_path_factory.mktemp("twh")
    prepare_tw_hokkien(hokkien_tree(root / "corpus"), root / "m")
    return root / "m/tw-hokkien_cuts_test.jsonl.gz"


def test_foochow_idioms_ids_puns_missing_audio_and_contamination(tmp_path, evaluation):
    corpus = foochow_idioms_tree(tmp_path / "corpus")
    assert main(["prepare", "foochow-idioms", "--corpus-dir", str(corpus), "--output-dir", str(tmp_path / "m"),
                 "--exclude-texts-from", str(evaluation)]) == 0
    manifest = tmp_path / "m/foochow-idioms_cuts_train.jsonl.gz"
    cuts = {c.id.removeprefix("foochow-idioms_"): c for c in load_cuts(manifest)}
    ids = [sid for sid, _, _ in FOOCHOW_ENTRIES]
    assert sorted(cuts) == sorted(ids[:4])          # ids[4] contaminated, ids[5] has no MP3
    sup = cuts[ids[1]].supervisions[0]
    assert sup.text == "老罔老会𫼗蜀把豆" and sup.custom["raw_text"] == "老罔老，会{⿰扌马}蜀把豆。"
    assert cuts[ids[2]].supervisions[0].text == "山木木蜀把豆"  # unknown IDS: its components, no placeholder
    assert cuts[ids[3]].supervisions[0].text == "荒唐拉四角屎"   # （方肠） is the pun's gloss, not read
    assert sup.language == "Matsu Eastern Min" and sup.speaker == "foochow-idioms"
    assert {k: sup.custom[k] for k in ("sentence_id", "site", "subgroup", "variety")} == {
        "sentence_id": ids[1], "site": "foochow-idioms", "subgroup": "min", "variety": "fuzhou"}
    report = (tmp_path / "m/foochow-idioms_prep_report.txt").read_text(encoding="utf-8")
    assert report.startswith("foochow-idioms: kept train: 4; skipped 2 (")
    assert "missing: 1" in report and "contaminated: 1" in report and str(evaluation) in report
    assert "0a1b2c3d-0000-4000-8000-000000000006.mp3\tmissing" in report
    assert f"foochow-idioms_{ids[4]}\tcontaminated" in report
    assert "1 ideographic description sequence(s) in 1 cut(s) replaced" in report
    assert "{⿰扌马} -> 𫼗 (U+2BF17) x1" in report and "{⿱山⿰木木} x1" in report
    cut = cuts[ids[0]]
    assert cut.sampling_rate == 16000 and load_mono(cut).shape == (cut.num_samples,)


def test_kasu100_pua_duplicates_stereo_and_contamination(tmp_path, evaluation):
    corpus = kasu100_tree(tmp_path / "corpus")
    out = prepare_kasu100(corpus, tmp_path / "m", exclude_texts_from=[evaluation])
    cuts = {c.id: c for c in out["train"]}
    assert sorted(cuts) == ["kasu100_k001", "kasu100_k002", "kasu100_k003"]
    sup = cuts["kasu100_k002"].supervisions[0]
    assert sup.text == normalize("先生𠢕早") and not PUA.search(sup.text) and PUA.search(sup.custom["raw_text"])
    assert PUA.sub("", sup.custom["raw_text"]) == "先生𠢕早"
    assert cuts["kasu100_k003"].supervisions[0].text == "剪刀"  # the topic lesson's line, not the review's
    assert sup.language == "Zhao'an Hakka" and sup.speaker is None
    keys = ("sentence_id", "site", "subgroup", "variety", "translation", "romanization")
    assert {k: sup.custom[k] for k in keys} == {
        "sentence_id": "k002", "site": "kasu100", "subgroup": "hak", "variety": "zhaoan", "translation": "老師早",
        "romanization": "sienˇ senˇ ngauˋ zooˆ"}
    report = (tmp_path / "m/kasu100_prep_report.txt").read_text(encoding="utf-8")
    assert report.startswith("kasu100: kept train: 3; skipped 4 (")
    assert "duplicate: 2" in report and "missing: 1" in report and "contaminated: 1" in report
    line = {c["audio"]: c["line"] for c in read_cards(corpus / "data.js") if "00" not in c["class"]}
    assert f"duplicate: k001.mp3 is also listed at data.js:{line['k001.mp3']}" in report
    assert "1 clip(s) listed with different texts" in report and "k003.mp3 (kept '剪刀'; also '剪刀石头布')" in report
    assert "k004.mp3\tmissing" in report and "kasu100_k005\tcontaminated" in report
    stereo = cuts["kasu100_k001"]
    assert stereo.sampling_rate == 16000 and stereo.supervisions[0].channel == [0, 1]
    assert load_mono(stereo).shape == (stereo.num_samples,)
    (corpus / "data.js").write_text("const textData = `\n[class]\t[front]\t[audio]\n`;\n", encoding="utf-8")
    with pytest.raises(ValueError, match="textData header"):
        prepare_kasu100(corpus, tmp_path / "m2")


@pytest.mark.skipif(not (REAL / "foochow-idioms").is_dir(), reason="real foochow-idioms corpus not present")
def test_real_foochow_idioms(tmp_path):
    cuts = prepare_foochow_idioms(REAL / "foochow-idioms", tmp_path)["train"]
    texts = [c.supervisions[0].text for c in cuts]
    assert len(cuts) == 519 and not any(ch in t for t in texts for ch in "{}⿰")
    assert {"𫼗", "𪴯", "𬂌"} <= set("".join(texts))
    report = (tmp_path / "foochow-idioms_prep_report.txt").read_text(encoding="utf-8")
    assert report.startswith("foochow-idioms: kept train: 519; skipped 0\n")
    assert "4 ideographic description sequence(s) in 4 cut(s) replaced" in report and "unknown" not in report


@pytest.mark.skipif(not (REAL / "kasu100").is_dir(), reason="real kasu100 corpus not present")
def test_real_kasu100(tmp_path):
    cuts = prepare_kasu100(REAL / "kasu100", tmp_path)["train"]
    assert len(cuts) == 324 and len({c.id for c in cuts}) == 324
    for cut in cuts:
        sup = cut.supervisions[0]
        assert sup.text and not PUA.search(sup.text) and sup.custom["translation"] and sup.custom["romanization"]
        assert sup.text == normalize(PUA.sub("", sup.custom["raw_text"]))  # the ruby glyphs change nothing else
    report = (tmp_path / "kasu100_prep_report.txt").read_text(encoding="utf-8")
    assert report.startswith("kasu100: kept train: 324; skipped 100 (duplicate: 100)\n")
    assert {c.id: c.supervisions[0].text for c in cuts}["kasu100_k214"] == "剪刀"
