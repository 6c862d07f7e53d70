"""``speechalign <command>``: the command line.

One module per pipeline stage registers that stage's commands (``register(subparsers, command)``) and holds
their argument definitions and the thin functions that call the library; adding a command touches one stage's
file. The stages, in pipeline order, are listed in ``STAGES``; ``speechalign --help`` groups the commands by them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from speechalign import __version__

log = logging.getLogger("speechalign")

# Pipeline order; each is a module speechalign/cli/<stage>.py with TITLE and register().
STAGES = ("prepare", "train", "decode", "retrieve", "compare", "report")

DESCRIPTION = """\
speechalign: Chinese dialect speech, end to end. Prepare dialect corpora as Lhotse manifests, train and
decode ASR (Whisper / wav2vec2 / Conformer encoders, hybrid CTC/attention, CER per dialect), and evaluate
cross-dialect speech retrieval from any encoder layer (SeqSim, FAISS, the YuBao protocol).

Every stage reads what the previous one wrote to disk: prepare -> train -> decode / retrieve -> compare -> report."""

EPILOG = """\
`speechalign <command> -h` shows a command's options and an example.
Quick start: egs/synth/run.sh (offline CPU demo, about 12 minutes on 2 cores).
Documentation: docs/ (`mkdocs serve`); its CLI reference is generated from this parser."""


class _StageHelpParser(argparse.ArgumentParser):
    """The root parser: its help lists the commands grouped by stage instead of in one flat list."""

    stages: list[tuple[str, list[str]]] = []

    def format_help(self) -> str:
        formatter = self._get_formatter()
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        formatter.add_text(self.description)
        commands = next(a for a in self._actions if isinstance(a, argparse._SubParsersAction))
        by_name = {a.dest: a for a in commands._choices_actions}
        for title, names in self.stages:
            formatter.start_section(title)
            formatter.add_arguments([by_name[n] for n in names if n in by_name])
            formatter.end_section()
        for group in self._action_groups:
            actions = [a for a in group._group_actions if a is not commands]
            if actions:
                formatter.start_section(group.title)
                formatter.add_arguments(actions)
                formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=24)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command; with ``command`` given (other than prepare), prepare's corpora are left out."""
    parser = _StageHelpParser(prog="speechalign", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"speechalign {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>",
                               parser_class=argparse.ArgumentParser)
    stages, deprecated = [], []
    for stage in STAGES:
        module = importlib.import_module(f"speechalign.cli.{stage}")
        before = set(sub.choices)
        module.register(sub, command)
        names = [n for n in sub.choices if n not in before]
        stages.append((module.TITLE, [n for n in names if sub.choices[n].get_default("deprecated") is None]))
        deprecated += [n for n in names if sub.choices[n].get_default("deprecated") is not None]
    if deprecated:
        stages.append(("deprecated aliases (removed in the next release)", deprecated))
    parser.stages = stages

    from speechalign.cli_examples import add_examples

    add_examples(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    command = None if at is None else argv[at]
    note = None
    if command == "compare":
        from speechalign.cli.compare import legacy_argv

        argv, note = legacy_argv(argv, at)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for warning in (note, getattr(args, "deprecated", None)):
        if warning:
            log.warning("%s", warning)
    try:
        _run(args)
    except BaseException as e:
        _close_progress_bars()
        if args.verbose or not isinstance(e, (FileNotFoundError, ValueError, RuntimeError)):
            raise
        log.error("%s", e)
        return getattr(e, "exit_code", 1)   # a training stopped by a signal exits 128 + N, as the shell reports it
    return 0


def _run(args) -> None:
    """The command, with console logging written through tqdm while it runs, so a warning clears the
    progress bar it interrupts instead of being glued to its end."""
    from contextlib import nullcontext

    from tqdm.contrib.logging import logging_redirect_tqdm

    console = any(isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr)
                  for h in logging.root.handlers)
    with logging_redirect_tqdm() if console else nullcontext():
        args.func(args)


def _close_progress_bars() -> None:
    """End the bars an error left open (each on its own line), so the error message starts a line."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
