"""Stage *compare*: result tables side by side, one ``speechalign compare <what>`` sub-command each.

The commands these replace (``compare-yubao``, ``compare-cer``, ``compare-systems``, ``ablation`` and
``compare TABLE ...`` without a sub-command) still work in 0.2.x, with a deprecation warning; 0.3.0 removes them."""

from __future__ import annotations

import argparse
from pathlib import Path

from speechalign.cli.common import labelled
from speechalign.cli_examples import EXAMPLES

TITLE = "compare: result tables side by side"
REMOVED_IN = "0.3.0"

# sub-command -> (help, function adding its arguments, command function); the old top-level name of each.
_OLD_NAMES = {"yubao": "compare-yubao", "cer": "compare-cer", "systems": "compare-systems", "ablation": "ablation"}


def register(sub, command: str | None = None) -> None:
    p = sub.add_parser("compare", help="compare pairs | yubao | cer | systems | ablation: retrieval runs, YuBao, "
                                       "CER, whole systems or training runs in one table",
                       description="Result tables of several runs or systems side by side (.md and .tsv; "
                                   "compare yubao also a layer plot).")
    whats = p.add_subparsers(dest="compare_what", required=True, metavar="<what>")
    for what, (help, add_arguments, func) in _SUBCOMMANDS.items():
        q = whats.add_parser(what, help=help)
        add_arguments(q)
        q.set_defaults(func=func)
    # The old names, for one release: same arguments, the new form in their help and a warning when run.
    for what, old in _OLD_NAMES.items():
        help, add_arguments, func = _SUBCOMMANDS[what]
        q = sub.add_parser(old, help=f"deprecated: use `speechalign compare {what}` (removed in {REMOVED_IN})",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description=f"Deprecated alias of `speechalign compare {what}`, kept for the 0.2 releases "
                                       f"and removed in {REMOVED_IN}: {help}.",
                           epilog=f"example:\n  {EXAMPLES[f'compare {what}']}")
        add_arguments(q)
        q.set_defaults(func=func, deprecated=f"`speechalign {old}` is deprecated and will be removed in "
                                             f"{REMOVED_IN}; use `speechalign compare {what}`")


def legacy_argv(argv: list[str], at: int) -> tuple[list[str], str | None]:
    """``speechalign compare TABLE ... --query Q --gallery G`` (0.1) -> ``compare pairs ...``, with a note.
    ``at`` is the index of ``compare`` in ``argv``."""
    rest = argv[at + 1:]
    if not rest or rest[0] in _SUBCOMMANDS or rest[0] in ("-h", "--help"):
        return argv, None
    return (argv[:at + 1] + ["pairs"] + rest,
            f"`speechalign compare TABLE ...` is deprecated and will be removed in {REMOVED_IN}; "
            f"use `speechalign compare pairs TABLE ...`")


def _add_pairs(p) -> None:
    p.add_argument("tables", nargs="+", help="retrieve pair-table TSVs, as PATH or LABEL=PATH")
    p.add_argument("--query", required=True, help="query dialect label")
    p.add_argument("--gallery", required=True, help="gallery dialect label")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .tsv written)")
    p.add_argument("--title", default="Cross-dialect retrieval", help="table title")
    p.add_argument("--best-per-system", action="store_true",
                   help="keep only each system's best row by R@1 (system = the label up to its first /, by default "
                        "the table's directory name)")


def _cmd_pairs(args) -> None:
    from speechalign.retrieval.compare import compare, parse_table_args

    print(compare(parse_table_args(args.tables), args.query, args.gallery, args.out, args.title, args.best_per_system))


def _add_yubao(p) -> None:
    p.add_argument("systems", nargs="+", help="LABEL=DIR, DIR holding a system's retrieve --protocol yubao tables")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md, .tsv, .png written)")
    p.add_argument("--title", default="YuBao protocol", help="table and plot title")


def _cmd_yubao(args) -> None:
    from speechalign.retrieval.compare import compare_yubao

    print(compare_yubao(labelled(args.systems, "compare yubao", Path.is_dir), args.out, args.title))


def _add_cer(p) -> None:
    p.add_argument("systems", nargs="+", help="LABEL=CER_TSV, or LABEL= for a system without transcripts (n/a row)")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .tsv written)")
    p.add_argument("--title", default="CER", help="table title")
    p.add_argument("--order", nargs="*", help="dialect column order (others follow alphabetically, overall last)")


def _cmd_cer(args) -> None:
    from speechalign.decode.report import compare_cer

    print(compare_cer(labelled(args.systems, "compare cer", Path.is_file, allow_empty=True), args.out, args.title,
                      args.order))


def _add_systems(p) -> None:
    p.add_argument("systems", nargs="+",
                   help="LABEL:cer=CER_TSV,yubao=RETRIEVAL_DIR,cascade=TEXT_RETRIEVAL_DIR,training=EXP_DIR_OR_SUMMARY_JSON "
                        "(every key optional; a missing one is n/a, no training = a pretrained model)")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .tsv written)")
    p.add_argument("--title", default="Systems", help="table title")
    p.add_argument("--mandarin", default="Mandarin", help="the variety kept out of the dialect mean (default Mandarin)")


def _cmd_systems(args) -> None:
    from speechalign.systems import compare_systems, parse_spec

    print(compare_systems([parse_spec(s) for s in args.systems], args.out, args.title, args.mandarin))


def _add_ablation(p) -> None:
    p.add_argument("exp_dirs", nargs="+", type=Path, help="experiment dirs, one row each; DIR@CHECKPOINT: the "
                   "decode report of that checkpoint instead (e.g. exp/real/full@wise-decoder-0.7)")
    p.add_argument("--cer", required=True, help="a CER report under each run's decode/ (e.g. CKPT/cer-SET-MODE.tsv)")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .tsv written)")
    p.add_argument("--order", nargs="*", help="dialect column order (others follow alphabetically, overall last)")


def _cmd_ablation(args) -> None:
    from speechalign.train.ablation import ablation_table

    print(ablation_table(args.exp_dirs, args.cer, args.out, args.order))


_SUBCOMMANDS = {
    "pairs": ("retrieval runs side by side for one query -> gallery dialect pair", _add_pairs, _cmd_pairs),
    "yubao": ("YuBao protocol side by side: best-layer mean R@1 per system, layer plot", _add_yubao, _cmd_yubao),
    "cer": ("per-dialect CER of several systems in one table", _add_cer, _cmd_cer),
    "systems": ("whole systems side by side: dialect and Mandarin CER, YuBao R@1 by embedding and by cascade, "
                "training steps and minutes", _add_systems, _cmd_systems),
    "ablation": ("training runs side by side: dev R@1, per-variety CER, steps, minutes", _add_ablation, _cmd_ablation),
}
