"""Every option of every command (``prepare <corpus>`` included) has help text, and every command's
``--help`` ends with an example. ``python -m tests.test_cli_help`` prints what lacks either."""

from __future__ import annotations

import argparse

from speechalign.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: str = "speechalign"):
    """(command path, parser) for the root and every subcommand, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{path} {name}")


def options_without_help(parser: argparse.ArgumentParser) -> list[str]:
    """``<command> <option>`` for every argument, and every subcommand, whose help is missing or empty."""
    missing = []
    for path, p in _commands(parser):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                missing += [f"{path} {name} (command)" for name in action.choices if name not in helped]
                continue
            if action.help == argparse.SUPPRESS:
                continue
            if not (action.help or "").strip():
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def commands_without_example(parser: argparse.ArgumentParser) -> list[str]:
    """Leaf commands whose ``--help`` shows no ``example`` section."""
    leaves = [(path, p) for path, p in _commands(parser)
              if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
    return [path for path, p in leaves if "example" not in p.format_help()]


def test_every_option_has_help():
    assert options_without_help(build_parser()) == []


def test_every_command_help_shows_an_example():
    assert commands_without_example(build_parser()) == []


def test_the_walker_finds_an_option_without_help():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    child = sub.add_parser("child", help="a command")
    child.add_argument("--bare")
    child.add_argument("--helped", help="has help")
    sub.add_parser("silent")
    assert options_without_help(parser) == ["speechalign silent (command)", "speechalign child --bare"]
    assert commands_without_example(parser) == ["speechalign child", "speechalign silent"]


if __name__ == "__main__":
    for line in options_without_help(build_parser()):
        print("no help:", line)
    for line in commands_without_example(build_parser()):
        print("no example:", line)


def test_a_command_that_prepares_no_corpus_parses_without_importing_torch():
    """Every CLI call builds the whole parser; the corpus adapters (lhotse, torch) only for prepare."""
    import subprocess
    import sys

    probe = ("import sys; from speechalign.cli import build_parser; p = build_parser({!r}); "
             "p.parse_args({!r}); print('torch' in sys.modules, 'lhotse' in sys.modules)")
    run = lambda cmd, argv: subprocess.run([sys.executable, "-c", probe.format(cmd, argv)], capture_output=True,
                                           text=True, check=True).stdout.split()
    assert run("compare", ["compare", "cer", "a=b.tsv", "--out", "x"]) == ["False", "False"]
    assert run("retrieve", ["retrieve", "--emb-dir", "e"]) == ["False", "False"]
    assert run("prepare", ["prepare", "goo-gi", "--corpus-dir", "c", "--output-dir", "o"]) == ["True", "True"]
