"""Stage *report*: one markdown page (and an HTML page to listen to retrieval results) from the stages' outputs."""

from __future__ import annotations

from pathlib import Path

TITLE = "report: REPORT.md and the retrieval page"


def register(sub, command: str | None = None) -> None:
    p = sub.add_parser("report", help="one markdown page (REPORT.md) from the stages' outputs")
    p.add_argument("--out-dir", type=Path, required=True,
                   help="where REPORT.md is written (stats.txt there is included)")
    p.add_argument("--exp-dir", type=Path,
                   help="trained experiment (training curve, CER tables); without it, --html writes only the page")
    p.add_argument("--retrieval-dir", type=Path, required=True,
                   help="directory of retrieve/sweep outputs, one subdirectory per embedding source")
    p.add_argument("--checkpoint", default="latest", help="whose decode/<checkpoint>/ CER tables to include")
    p.add_argument("--html", action="store_true",
                   help="also write <out-dir>/retrieval.html: plots, each query's top 5 with audio players, filters")
    p.add_argument("--embed-audio", action="store_true",
                   help="--html: embed audio files up to --embed-max-kb in the page (default: relative links)")
    p.add_argument("--embed-max-kb", type=int, default=256, help="--embed-audio: largest file embedded (KiB)")
    p.add_argument("--embed-images", action="store_true", help="--html: embed the PNG plots (default: relative links)")
    p.add_argument("--max-queries", type=int, default=20, help="--html: queries listed per run and dialect pair")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> None:
    from speechalign.report import write_report

    if args.html:
        from speechalign.retrieval.page import write_page

        print(write_page(args.retrieval_dir, args.out_dir / "retrieval.html", args.embed_audio, args.embed_max_kb,
                         args.embed_images, args.max_queries))
    elif args.exp_dir is None:
        raise ValueError("report: --exp-dir is required (except with --html, which then writes only the page)")
    if args.exp_dir is not None:
        print(write_report(args.out_dir, args.exp_dir, args.retrieval_dir, args.checkpoint))
