"""lm-effect.md: each variety's CER without and with the LM, paired by set and mode (hand-computed changes)."""

from speechalign.decode.report import lm_effect
from speechalign.report import write_report


def cer_tsv(path, header: str, rows: dict[str, float]) -> None:
    body = "".join(f"{d}\t{c:.2f}\t10\t5\t5\t0\t0\t2\n" for d, c in rows.items())
    path.write_text(f"# {header}\ndialect\tCER%\tchars\tcorrect\tsub\tdel\tins\tutts\n{body}", encoding="utf-8")
    path.with_suffix(".md").write_text(f"CER table, {header}\n", encoding="utf-8")


def test_lm_effect_pairs_each_lm_table_with_its_lm_free_twin(tmp_path):
    cer_tsv(tmp_path / "cer-x_test-ctc_prefix_beam.tsv", "mode=ctc_prefix_beam beam=5, no LM",
            {"Hakka": 60.0, "Mandarin": 50.5, "overall": 55.25})
    cer_tsv(tmp_path / "cer-x_test-ctc_prefix_beam+lm.tsv",
            "mode=ctc_prefix_beam+lm beam=5, LM c4.arpa (weight 0.3, word score 1.5), search=cpu, RTF=0.01",
            {"Hakka": 56.0, "Mandarin": 48.0, "overall": 52.0})
    # joint_beam's header has no search backend after the LM
    cer_tsv(tmp_path / "cer-x_test-joint_beam.tsv", "mode=joint_beam, no LM", {"overall": 30.0})
    cer_tsv(tmp_path / "cer-x_test-joint_beam+lm.tsv",
            "beam=5, ctc_weight=0.7, LM c4.arpa (weight 0.1, word score 1), RTF=0.1373", {"overall": 29.5})
    # an LM table without its twin is left out, not paired with something else
    cer_tsv(tmp_path / "cer-x_dev-ctc_greedy+lm.tsv", "mode=ctc_greedy+lm", {"overall": 1.0})
    # a packed reading pairs with the packed LM-free one, never with the unpacked
    cer_tsv(tmp_path / "cer-x_test-attention_rescoring+packed.tsv", "no LM", {"overall": 40.0})
    cer_tsv(tmp_path / "cer-x_test-attention_rescoring.tsv", "no LM", {"overall": 90.0})
    cer_tsv(tmp_path / "cer-x_test-attention_rescoring+lm+packed.tsv", "LM c4.arpa (weight 0.2, word score 0)",
            {"overall": 39.0})
    text = lm_effect(tmp_path).read_text(encoding="utf-8")
    assert "### x_test-ctc_prefix_beam: LM c4.arpa (weight 0.3, word score 1.5)\n" in text
    assert "| Hakka | 60.00 | 56.00 | -4.00 |" in text
    assert "| Mandarin | 50.50 | 48.00 | -2.50 |" in text
    assert "| overall | 55.25 | 52.00 | -3.25 |" in text
    assert "### x_test-joint_beam: LM c4.arpa (weight 0.1, word score 1)\n" in text
    assert "| overall | 30.00 | 29.50 | -0.50 |" in text
    assert "x_dev" not in text
    assert "### x_test-attention_rescoring+packed: LM c4.arpa (weight 0.2, word score 0)\n" in text
    assert "| overall | 40.00 | 39.00 | -1.00 |" in text


def test_lm_effect_absent_without_pairs_and_in_the_report(tmp_path):
    decode_dir = tmp_path / "exp" / "decode" / "latest"
    decode_dir.mkdir(parents=True)
    cer_tsv(decode_dir / "cer-x_test-ctc_prefix_beam.tsv", "no LM", {"A": 10.0, "overall": 10.0})
    assert lm_effect(decode_dir) is None
    cer_tsv(decode_dir / "cer-x_test-ctc_prefix_beam+lm.tsv", "LM c.arpa (weight 1, word score 0)",
            {"A": 7.5, "overall": 7.5})
    report = write_report(tmp_path, tmp_path / "exp", tmp_path / "none").read_text(encoding="utf-8")
    assert "### Character LM: CER without and with it" in report
    assert "#### x_test-ctc_prefix_beam: LM c.arpa (weight 1, word score 0)" in report
    assert "| A | 10.00 | 7.50 | -2.50 |" in report
