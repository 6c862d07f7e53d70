import shutil

import pytest

from data_prep.common import CorpusLayoutError
from data_prep.tw_hokkien import prepare_tw_hokkien
from data_prep.yubao import prepare_yubao, prepare_yubao_from_cuts
from speechalign.data.manifest import cut_meta, load_cuts
from tests.fake_corpora import hokkien_tree, yubao_tree



def test_yubao_sites_subgroups_sentence_ids_and_report(tmp_path):
    root = yubao_tree(tmp_path / "scraped")
    prepare_yubao(root, tmp_path / "m", sites_yaml=root / "sites.yaml")
    cuts = {c.id: c for c in load_cuts(tmp_path / "m/yubao_cuts_test.jsonl.gz")}
    assert len(cuts) == 7      # 3 + 3 + 2 minus the unreadable one
    m = cut_meta(cuts["04G96mb01yf0001"])
    assert (m["site"], m["subgroup"], m["sentence_id"], m["dialect"]) == ("上海_市区_杨浦区", "wuu", "0001", "Wu")
    assert m["text"] == "我去" and cuts["04G96mb01yf0001"].supervisions[0].custom["translation"] == "普通话翻译"
    assert cuts["18E38mb01yf0002"].supervisions[0].text == "广东话好听"
    assert cut_meta(cuts["18E40mb01yf0001"])["dialect"] == "Gan"
    report = (tmp_path / "m/yubao_prep_report.txt").read_text(encoding="utf-8")
    assert "04G96mb01yf0003.wav\tunreadable" in report
    assert "site 江西_宜春_奉新 (gan): 2 of 50 sentences" in report
    assert "福建_厦门_思明 (min) is in the site list but has no <site_id>.json" in report


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")
def test_yubao_converts_mp4_once(tmp_path):
    root = yubao_tree(tmp_path / "scraped", with_mp4=True)
    prepare_yubao(root, tmp_path / "m", sites_yaml=root / "sites.yaml")
    flac = root / "江西_吉安_万安" / "18E38mb01yf0002.flac"
    assert flac.is_file()
    cut = {c.id: c for c in load_cuts(tmp_path / "m/yubao_cuts_test.jsonl.gz")}["18E38mb01yf0002"]
    assert cut.sampling_rate == 16000 and cut.duration == pytest.approx(1.2, abs=0.1)
    before = flac.stat().st_mtime_ns
    prepare_yubao(root, tmp_path / "m", sites_yaml=root / "sites.yaml")
    assert flac.stat().st_mtime_ns == before


def test_yubao_default_site_list_and_layout_error(tmp_path):
    with pytest.raises(CorpusLayoutError, match="site_id"):
        prepare_yubao(tmp_path / "missing", tmp_path / "m")
    root = yubao_tree(tmp_path / "scraped")
    prepare_yubao(root, tmp_path / "m")   # the shipped benchmark list knows all three sites
    assert len(load_cuts(tmp_path / "m/yubao_cuts_test.jsonl.gz")) == 7


def test_yubao_from_reference_manifests(tmp_path):
    from lhotse import CutSet, SupervisionSegment
    from lhotse.testing.dummies import dummy_recording

    cuts = []
    for i, (city, group) in enumerate([("上海", "wuu"), ("南昌", "gan")]):
        rec = dummy_recording(i, duration=1.0)
        rec.id = f"04G9{i}mb01yf000{i + 1}"
        cut = rec.to_cut()
        cut.supervisions = [SupervisionSegment(rec.id, rec.id, 0, 1.0, text="儂好。", custom={"city": city, "subgrouping": group})]
        cuts.append(cut)
    CutSet.from_cuts(cuts).to_file(tmp_path / "ref.jsonl.gz")
    out = prepare_yubao_from_cuts([tmp_path / "ref.jsonl.gz"], tmp_path / "m")["test"]
    metas = sorted((cut_meta(c)["site"], cut_meta(c)["subgroup"], cut_meta(c)["sentence_id"], cut_meta(c)["dialect"]) for c in out)
    assert metas == [("上海", "wuu", "0001", "Wu"), ("南昌", "gan", "0002", "Gan")]


def test_tw_hokkien_parallel_sets(tmp_path):
    out = prepare_tw_hokkien(hokkien_tree(tmp_path / "twh"), tmp_path / "m")
    test = {c.id: cut_meta(c) for c in load_cuts(tmp_path / "m/tw-hokkien_cuts_test.jsonl.gz")}
    assert {k: (v["dialect"], v["sentence_id"], v["text"]) for k, v in test.items()} == {
        "s001": ("Hokkien", "001", "祝恁一路平安"), "m001": ("Mandarin", "001", "祝福你们一路平安"),
        "s002": ("Hokkien", "002", "伊来矣")}
    words = list(out["words"])
    assert len(words) == 1 and cut_meta(words[0])["sentence_id"] == "001"
    assert "no-translation" in (tmp_path / "m/tw-hokkien_prep_report.txt").read_text(encoding="utf-8")
    with pytest.raises(CorpusLayoutError, match="sentences.tsv"):
        prepare_tw_hokkien(tmp_path, tmp_path / "x")
