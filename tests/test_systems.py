"""compare systems: the README's "against the alternatives" table, from the files the recipe stages write."""

from __future__ import annotations

import json

import pytest
import yaml

from speechalign.cli import main
from speechalign.systems import compare_systems, parse_spec


def cer_tsv(path, table):
    path.write_text("# set=goo-gi_test mode=m\ndialect\tCER%\tutts\n"
                    + "".join(f"{d}\t{v}\t10\n" for d, v in table.items()), encoding="utf-8")
    return path


def yubao_tsv(path, off_diagonal):
    """A 2x2 subgroup table whose mean off-diagonal R@1 is ``off_diagonal`` (both cells the same)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# t\nsource\\target\thak\tmin\nhak\t99.0\t{off_diagonal}\nmin\t{off_diagonal}\t99.0\n",
                    encoding="utf-8")


@pytest.fixture
def outputs(tmp_path):
    cer = cer_tsv(tmp_path / "cer.tsv", {"Mandarin": 30.0, "Hakka": 40.0, "Min": 60.0, "overall": 45.0})
    emb = tmp_path / "emb"
    yubao_tsv(emb / "yubao-seqsim-L3-mean.tsv", 50.0)
    yubao_tsv(emb / "yubao-seqsim-L5-mean-center.tsv", 61.5)    # the best: seqsim, centered, layer 5
    yubao_tsv(emb / "yubao-pooled-L5-mean.tsv", 40.0)
    text = tmp_path / "text"
    yubao_tsv(text / "yubao-text-tfidf.tsv", 33.3)
    exp = tmp_path / "exp"
    for step, compute in ((600, 600.0), (1200, 1500.0)):
        (exp / "checkpoints" / f"step-{step}").mkdir(parents=True)
        (exp / "checkpoints" / f"step-{step}" / "metrics.yaml").write_text(
            yaml.safe_dump({"step": step, "train_compute_s": compute, "train_data_wait_s": 60.0}), encoding="utf-8")
    peer = tmp_path / "summary.json"
    peer.write_text(json.dumps({"steps": 110, "minutes": 57.25}), encoding="utf-8")
    return {"cer": cer, "emb": emb, "text": text, "exp": exp, "peer": peer}


def test_one_row_per_system_with_the_dialect_mean_the_best_layer_and_the_training_record(outputs, tmp_path):
    o = outputs
    md = compare_systems([
        parse_spec(f"zero-shot:cer={o['cer']},cascade={o['text']}"),
        parse_spec(f"recipe:cer={o['cer']},yubao={o['emb']},cascade={o['text']},training={o['exp']}"),
        parse_spec(f"peer:training={o['peer']}"),
    ], tmp_path / "alt", "t").read_text(encoding="utf-8")
    # labels may hold ':' and ',' (the recipe's do)
    assert parse_spec(f"a (b, c: d):cer={o['cer']},yubao={o['emb']}") == parse_spec(f"a (b, c: d):yubao={o['emb']},cer={o['cer']}")
    assert parse_spec(f"a (b, c: d):cer={o['cer']}").label == "a (b, c: d)"
    rows = [r for r in md.splitlines() if r.startswith("| ") and not r.startswith("| system")]
    # mean dialect CER = (40 + 60) / 2, not the overall column and not counting Mandarin
    assert rows[0] == "| zero-shot | 50.0 | 30.0 | n/a | 33.3 | 0 | 0 |"
    # the last checkpoint's steps; minutes = (1500 + 60) / 60
    assert rows[1] == "| recipe | 50.0 | 30.0 | 61.5 (seqsim, centered, L5) | 33.3 | 1200 | 26.0 |"
    assert rows[2] == "| peer | n/a | n/a | n/a | n/a | 110 | 57.2 |"
    tsv = (tmp_path / "alt.tsv").read_text(encoding="utf-8").splitlines()
    assert len(tsv) == 4 and tsv[2].split("\t")[3] == "61.5 (seqsim, centered, L5)"


def test_bad_specs_name_the_system_and_the_field(outputs, tmp_path):
    with pytest.raises(ValueError, match="not LABEL:key=path"):
        parse_spec(str(outputs["cer"]))
    with pytest.raises(ValueError, match=r"recipe: 'wer=.*' is not one of cer=PATH"):
        parse_spec(f"recipe:wer={outputs['cer']}")
    with pytest.raises(FileNotFoundError, match=r"recipe: yubao=.*missing does not exist"):
        parse_spec(f"recipe:yubao={tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="cer= given twice"):
        parse_spec(f"recipe:cer={outputs['cer']},cer={outputs['cer']}")
    no_mandarin = cer_tsv(tmp_path / "nm.tsv", {"Hakka": 1.0, "overall": 1.0})
    with pytest.raises(ValueError, match="needs a 'Mandarin' column"):
        compare_systems([parse_spec(f"x:cer={no_mandarin}")], tmp_path / "o", "t")
    with pytest.raises(ValueError, match="no yubao-\\*.tsv tables"):
        compare_systems([parse_spec(f"x:yubao={tmp_path}")], tmp_path / "o", "t")
    bad_summary = tmp_path / "s.json"
    bad_summary.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="no 'steps' field"):
        compare_systems([parse_spec(f"x:training={bad_summary}")], tmp_path / "o", "t")


def test_cli(outputs, tmp_path, caplog):
    assert main(["compare", "systems", f"r:cer={outputs['cer']},training={outputs['exp']}", "--out",
                 str(tmp_path / "alt"), "--title", "goo-gi"]) == 0
    assert "| r | 50.0 | 30.0 | n/a | n/a | 1200 | 26.0 |" in (tmp_path / "alt.md").read_text(encoding="utf-8")
    assert main(["compare", "systems", "r:cer=/nonexistent.tsv", "--out", str(tmp_path / "x")]) == 1
    assert "compare systems: r: cer=/nonexistent.tsv does not exist" in caplog.text
