"""The command line as users meet it: ``--help`` groups the commands by pipeline stage, ``compare`` has one
sub-command per table, the old comparison names still run (with a deprecation warning), ``--version`` is the
CHANGELOG's newest release, and each command is registered by exactly one stage module."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest

import speechalign
from speechalign.cli import STAGES, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_help_lists_every_command_under_its_stage():
    parser = build_parser()
    text = parser.format_help()
    assert "argument parsing only" not in text
    for stage in STAGES:
        assert f"\n{importlib.import_module(f'speechalign.cli.{stage}').TITLE}:\n" in text
    for title, names in parser.stages:
        for name in names:
            assert re.search(rf"^  {re.escape(name)}\s", text, re.M), name
    listed = [n for _, names in parser.stages for n in names]
    assert sorted(listed) == sorted(_commands(parser)) and len(listed) == len(set(listed))


def test_each_stage_module_registers_its_own_commands():
    """Adding a command touches one stage's file: every module's register() adds only new names."""
    sub = argparse.ArgumentParser().add_subparsers()
    seen: dict[str, str] = {}
    for stage in STAGES:
        before = set(sub.choices)
        importlib.import_module(f"speechalign.cli.{stage}").register(sub, "report")
        for name in set(sub.choices) - before:
            assert name not in seen
            seen[name] = stage
    assert seen["train"] == "train" and seen["decode"] == "decode" and seen["embed"] == "retrieve"
    assert seen["compare"] == seen["compare-cer"] == "compare"


def test_compare_has_one_subcommand_per_table():
    compare = _commands(build_parser("compare"))["compare"]
    assert sorted(_commands(compare)) == ["ablation", "cer", "pairs", "systems", "yubao"]


@pytest.mark.parametrize("old, new", [("compare-yubao", "yubao"), ("compare-cer", "cer"),
                                      ("compare-systems", "systems"), ("ablation", "ablation")])
def test_old_comparison_names_are_deprecated_aliases(old, new):
    parser = build_parser(old)
    alias, current = _commands(parser)[old], _commands(_commands(parser)["compare"])[new]
    assert alias.get_default("func") is current.get_default("func")
    assert [a.dest for a in alias._actions] == [a.dest for a in current._actions]
    assert f"speechalign compare {new}" in alias.format_help() and "deprecated" in alias.format_help().lower()


def test_an_alias_runs_and_warns(tmp_path, caplog):
    cer = tmp_path / "cer.tsv"
    cer.write_text("dialect\tCER%\nMandarin\t10.00\noverall\t10.00\n", encoding="utf-8")
    assert main(["compare-cer", f"a={cer}", "--out", str(tmp_path / "old")]) == 0
    assert "`speechalign compare-cer` is deprecated" in caplog.text
    caplog.clear()
    assert main(["compare", "cer", f"a={cer}", "--out", str(tmp_path / "new")]) == 0
    assert "deprecated" not in caplog.text
    assert (tmp_path / "old.md").read_text(encoding="utf-8") == (tmp_path / "new.md").read_text(encoding="utf-8")


def test_compare_without_a_subcommand_is_the_old_pair_table(tmp_path, caplog, monkeypatch):
    """``speechalign compare TABLE ... --query Q --gallery G`` (0.1) runs ``compare pairs``, with a warning."""
    import speechalign.cli.compare as stage

    seen = []
    monkeypatch.setitem(stage._SUBCOMMANDS, "pairs", (*stage._SUBCOMMANDS["pairs"][:2], seen.append))
    assert main(["compare", "a.tsv", "b.tsv", "--query", "Q", "--gallery", "G", "--out", str(tmp_path / "o")]) == 0
    assert seen[0].tables == ["a.tsv", "b.tsv"] and seen[0].compare_what == "pairs"
    assert "use `speechalign compare pairs TABLE ...`" in caplog.text


def test_version_is_the_changelogs_newest_release(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"speechalign {speechalign.__version__}"
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert releases[0] == speechalign.__version__
