import pytest
from lhotse import CutSet, SupervisionSegment
from lhotse.testing.dummies import dummy_recording

from speechalign.data.stats import manifest_stats


def _cuts(durations, texts):
    cuts = []
    for i, (d, t) in enumerate(zip(durations, texts)):
        rec = dummy_recording(i, duration=d)
        cut = rec.to_cut()
        cut.supervisions = [SupervisionSegment(f"s{i}", rec.id, 0, d, text=t, language="Wu", speaker=f"p{i % 2}")]
        cuts.append(cut)
    return CutSet.from_cuts(cuts)


def test_stats_counts_and_warnings(tmp_path):
    path = tmp_path / "x_cuts_dev.jsonl.gz"
    _cuts([2.0, 2.1, 1.9, 2.0, 2.2, 40.0], ["甲", "乙", "", "丁", "戊", "己"]).to_file(path)
    stats = manifest_stats([path])
    n, sec, spk = stats.rows[("dev", "Wu")]
    assert n == 6 and sec == pytest.approx(50.2) and len(spk) == 2
    joined = "\n".join(stats.warnings)
    assert "1 cut(s) with empty text" in joined
    assert "duration outlier" in joined and "(40.00s)" in joined
    assert "(2.20s)" not in joined
