"""``speechalign <command>``: argument parsing only; every command calls a library function."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

log = logging.getLogger("speechalign")


def _add_prepare(subparsers) -> None:
    from data_prep import ADAPTERS

    p = subparsers.add_parser("prepare", help="write Lhotse cut manifests for a corpus")
    corpora = p.add_subparsers(dest="corpus", required=True, metavar="<corpus>")
    for name in ADAPTERS:
        importlib.import_module(f"data_prep.{name}").add_cli(corpora)


def _cmd_stats(args) -> None:
    from speechalign.data.stats import manifest_stats

    stats = manifest_stats(args.cuts, outlier_factor=args.outlier_factor)
    print(stats.table())
    for w in stats.warnings:
        log.warning(w)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechalign", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _add_prepare(sub)

    p = sub.add_parser("stats", help="utterances and hours per dialect and split, with data warnings")
    p.add_argument("cuts", nargs="+", type=Path, help="cut manifests (.jsonl.gz)")
    p.add_argument("--outlier-factor", type=float, default=3.0, help="IQR multiple for duration outliers")
    p.set_defaults(func=_cmd_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        if args.verbose:
            raise
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
