"""The default demo at toy size (egs/synth/run.sh --quick): every stage runs and the report has the
expected sections with numeric tables and plots."""

import re
import shutil

import pytest

from tests.egs.test_egs_dry_run import run_egs


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (tools/install.sh does it)")
def test_quick_demo_writes_full_report(tmp_path):
    out = run_egs("synth", "--quick", "--out", tmp_path / "synth")
    report_path = tmp_path / "synth" / "REPORT.md"
    assert f"report written to {report_path}" in out.stdout
    # the demo's sizing: sentences of the corpus's 800 most frequent characters, the recipe's 8x subsampling
    assert "use only the 800 most frequent characters" in out.stdout
    assert "subsampling_rate: 8" in (tmp_path / "synth" / "conformer_ctc" / "config.yaml").read_text(encoding="utf-8")
    report = report_path.read_text(encoding="utf-8")
    for section in ("## Summary", "## Data", "## Training", "## ASR: CER per dialect", "## Retrieval", "### Best layer",
                    "### YuBao-style matrix"):
        assert section in report, section
    for mode in ("ctc_greedy", "ctc_prefix_beam", "attention_rescoring"):
        assert f"### cer-synth_test-{mode}" in report
    for variety in ("Mandarin", "Cantonese", "Hakka"):
        assert re.search(rf"\| {variety} \| \d+\.\d+ \| \d+ \|", report), variety   # CER %, characters
        assert re.search(rf"\| {variety} \| \d+\.\d\d \| \d+\.\d\d \| [+-]\d+\.\d\d \|", report), variety
    # the LM's weights come from the dev sweep, and the without/with table names them
    assert re.search(r"#### synth_test-ctc_prefix_beam: LM char4\.arpa \(weight [\d.]+, word score [\d.]+\)", report)
    assert "### cer-synth_test-attention_rescoring+lm" in report
    assert re.search(r"\| trained \| seqsim \| 2 \| dialect \|  \| \d\.\d{3} \| \d\.\d{3} \|", report)
    assert re.search(r"\| seqsim \| 2 \| none \| \d+\.\d\d \|", report)   # the summary's YuBao mean
    assert re.search(r"\| attention_rescoring \| (\d+\.\d\d \| ){3}\d+\.\d\d \|", report)
    # The demo pins the portable kernels whatever the machine, so every run names the same arithmetic.
    assert re.search(r"Trained 30 steps\. Arithmetic: torch [^,]+, AVX2 kernels \(MKL_CBWR=AVX2, ONEDNN_MAX_CPU_ISA=AVX2\), "
                     r"2 threads; a run with the same corpus", report)
    for png in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report):
        assert (report_path.parent / png).stat().st_size > 1000, png
    assert len(re.findall(r"\.png\)", report)) >= 5
    assert "[retrieval.html](retrieval.html)" in report
    page = (report_path.parent / "retrieval.html").read_text(encoding="utf-8")
    assert '"source":"trained","name":"seqsim-L2-mean-center"' in page and "sweep-mean-center" in page
