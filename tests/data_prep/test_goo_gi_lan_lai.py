import re
from pathlib import Path

import pytest

from data_prep.component_spellings import COMPONENT_SPELLINGS, known_to_python, replace_component_spellings
from data_prep.goo_gi import parse_ids, prepare_goo_gi
from data_prep.lan_lai import prepare_lan_lai
from data_prep.tw_hokkien import prepare_tw_hokkien
from speechalign.cli import main
from speechalign.data.contamination import PrepReport, drop_contaminated
from speechalign.data.manifest import cut_meta, load_cuts
from speechalign.text import normalize
from tests.fake_corpora import goo_gi_tree, hokkien_tree, lan_lai_tree

REAL = Path("/work/shared/data")
RANGES = {"train_ids": "001-003", "dev_ids": "004", "test_ids": "005-006"}


@pytest.fixture(scope="module")
def goo_gi(tmp_path_factory):
    root = tmp_path_factory.mktemp("goo")
    corpus = goo_gi_tree(root / "corpus")
    prepare_goo_gi(corpus, root / "m", **RANGES)
    cuts = {s: load_cuts(root / f"m/goo-gi_cuts_{s}.jsonl.gz") for s in ("train", "dev", "test")}
    return corpus, cuts, (root / "m/goo-gi_prep_report.txt").read_text(encoding="utf-8")


def test_component_spellings_replaced_and_unknown_ones_returned():
    text, unknown = replace_component_spellings("[亻厓]有[扌老]，[口口口]。")
    assert text == "𠊎有㧯，[口口口]。" and unknown == ["[口口口]"]
    assert all(len(v) == 1 for v in COMPONENT_SPELLINGS.values())


@pytest.mark.skipif(not (REAL / "goo-gi").is_dir(), reason="real corpora not present")
def test_table_covers_every_spelling_in_the_real_corpora():
    files = [*(REAL / "goo-gi/utf8_xml").glob("*.csv"), *(REAL / "lan-lai/csv").glob("*.csv")]
    found = {m for f in files for m in re.findall(r"\[[^\]]*\]", f.read_text(encoding="utf-8"))}
    assert len(found) == 28 and found <= set(COMPONENT_SPELLINGS)


def test_goo_gi_text_cleaning_and_custom_fields(goo_gi):
    _, cuts, report = goo_gi
    c = {x.id: x for x in cuts["train"]}
    sup = c["goo-gi_c_001"].supervisions[0]
    assert sup.text == normalize("𠊎最好去夜市仔食東西。") and sup.custom["raw_text"] == "[亻厓]最好去夜市仔食東西。"
    assert c["goo-gi_c_002"].supervisions[0].text == normalize("暗餐準備好咧")       # （夜餐） dropped
    assert c["goo-gi_c_003"].supervisions[0].text == normalize("駛車以前愛䌈安全帶")
    assert c["goo-gi_m_003"].supervisions[0].text == normalize("我有足濟領䘥仔")
    assert sup.language == "Sixian Hakka" and sup.speaker == "goo-gi_c"
    assert {k: sup.custom[k] for k in ("sentence_id", "site", "subgroup", "variety", "translation")} == {
        "sentence_id": "001", "site": "goo-gi_c", "subgroup": "hak", "variety": "c", "translation": "我最喜歡去夜市吃東西。"}
    assert c["goo-gi_g_001"].supervisions[0].custom["subgroup"] == "zh_standard"
    assert "[口口口] x1" in report
    m = {x.id: x for x in cuts["dev"]}["goo-gi_c_004"].supervisions[0]
    assert "𱐿" in m.text if known_to_python("𱐿") else "[勿愛] x1" in report


def test_goo_gi_missing_audio_counted_and_splits_disjoint_across_varieties(goo_gi):
    _, cuts, report = goo_gi
    assert re.search(r"g_files/002\.mp3\tmissing", report) and "skipped 1 (missing: 1)" in report
    assert {s: len(v) for s, v in cuts.items()} == {"train": 8, "dev": 3, "test": 6}
    train_ids = {cut_meta(c)["sentence_id"] for c in cuts["train"]}
    for split in ("dev", "test"):
        assert not train_ids & {cut_meta(c)["sentence_id"] for c in cuts[split]}
    assert "dev: 0 cut(s) whose text equals a train text" in report


def test_goo_gi_lying_header_uses_decoded_length(goo_gi):
    _, cuts, report = goo_gi
    cut = {c.id: c for c in cuts["test"]}["goo-gi_m_005"]
    assert cut.duration < 0.6 and "m_files/005.mp3 (header 1.10 s, decoded" in report
    audio = cut.load_audio()
    assert cut.sampling_rate == 16000 and audio.shape[-1] == cut.num_samples


def test_goo_gi_id_ranges(tmp_path):
    assert parse_ids("121-140,150", "x") == set(range(121, 141)) | {150} and parse_ids("", "x") == set()
    corpus = goo_gi_tree(tmp_path / "corpus")
    with pytest.raises(ValueError, match="train_ids and dev_ids overlap on 1 id"):
        prepare_goo_gi(corpus, tmp_path / "m", train_ids="001-004", dev_ids="004", test_ids="005")
    with pytest.raises(ValueError, match="not an id"):
        prepare_goo_gi(corpus, tmp_path / "m", train_ids="abc")
    assert main(["prepare", "goo-gi", "--corpus-dir", str(corpus), "--output-dir", str(tmp_path / "all"),
                 "--varieties", "m", "c", "--all-test"]) == 0
    assert sorted(p.name for p in (tmp_path / "all").glob("*.jsonl.gz")) == ["goo-gi_cuts_test.jsonl.gz"]
    assert len(load_cuts(tmp_path / "all/goo-gi_cuts_test.jsonl.gz")) == 12
    assert main(["prepare", "goo-gi", "--corpus-dir", str(corpus), "--output-dir", str(tmp_path / "x"),
                 "--all-test", "--dev-ids", "001"]) == 1


def test_lan_lai_contamination_filter_and_columns(tmp_path):
    prepare_tw_hokkien(hokkien_tree(tmp_path / "twh"), tmp_path / "twm")
    evaluation = tmp_path / "twm/tw-hokkien_cuts_test.jsonl.gz"
    corpus = lan_lai_tree(tmp_path / "ll")
    out = prepare_lan_lai(corpus, tmp_path / "m", exclude_texts_from=[evaluation])
    cuts = {c.id: c for c in out["train"]}
    assert sorted(cuts) == ["lan-lai_0301_01_03_03", "lan-lai_0302_01_01_03", "lan-lai_0302_01_02_03"]
    sup = cuts["lan-lai_0301_01_03_03"].supervisions[0]
    assert sup.text == normalize("伊足䆀") and sup.language == "Taiwanese Hokkien"
    assert {k: sup.custom[k] for k in ("sentence_id", "site", "subgroup", "translation", "romanization")} == {
        "sentence_id": "0301_01_03_03", "site": "lan-lai", "subgroup": "min", "translation": "他很醜。",
        "romanization": "I tsiok bái."}
    report = (tmp_path / "m/lan-lai_prep_report.txt").read_text(encoding="utf-8")
    assert "lan-lai_0301_01_01_03\tcontaminated" in report and str(evaluation) in report
    assert "missing: 1" in report and "0302_01_02_03.mp3 (header 1.50 s" in report
    lying = cuts["lan-lai_0302_01_02_03"]
    assert lying.duration < 1.0 and lying.load_audio().shape[-1] == lying.num_samples
    (corpus / "csv/3-2.csv").write_text("Iah,Tsiunn,Ho,Hanji,Lomaji,Huagi,Audio\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"3-2\.csv: missing column\(s\) \['Imtong \(or ImTong\)'\]"):
        prepare_lan_lai(corpus, tmp_path / "m2")


def test_filter_cli_drops_and_counts(tmp_path):
    prepare_tw_hokkien(hokkien_tree(tmp_path / "twh"), tmp_path / "twm")
    evaluation = tmp_path / "twm/tw-hokkien_cuts_test.jsonl.gz"
    prepare_lan_lai(lan_lai_tree(tmp_path / "ll"), tmp_path / "m")
    out = tmp_path / "f/clean.jsonl.gz"
    assert main(["prepare", "filter", "--cuts", str(tmp_path / "m/lan-lai_cuts_train.jsonl.gz"),
                 "--exclude-texts-from", str(evaluation), "--out", str(out)]) == 0
    assert len(load_cuts(out)) == 3
    assert "skipped 1 (contaminated: 1)" in (tmp_path / "f/clean_filter_prep_report.txt").read_text(encoding="utf-8")
    report = PrepReport("x")
    assert drop_contaminated(load_cuts(out), [], report) and not report.skipped


@pytest.mark.skipif(not (REAL / "goo-gi").is_dir(), reason="real goo-gi corpus not present")
def test_real_goo_gi_splits_and_missing_mandarin_files(tmp_path):
    out = prepare_goo_gi(REAL / "goo-gi", tmp_path)
    assert {s: len(c) for s, c in out.items()} == {"train": 1197, "dev": 200, "test": 299}
    report = (tmp_path / "goo-gi_prep_report.txt").read_text(encoding="utf-8")
    assert "skipped 4 (missing: 4)" in report
    assert all(f"g_files/{n}.mp3\tmissing" in report for n in ("037", "075", "113", "152"))
