"""Stage *prepare*: corpus manifests, their statistics, Shar shards and precomputed features."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

log = logging.getLogger("speechalign")

TITLE = "prepare: corpora -> Lhotse cut manifests"


def register(sub, command: str | None = None) -> None:
    """``command`` other than None or prepare: prepare's corpus adapters are left out (they import lhotse and
    torch, 2 s, which a command that does not prepare a corpus should not wait for)."""
    _add_prepare(sub, adapters=command in (None, "prepare"))

    p = sub.add_parser("stats", help="utterances and hours per dialect and split, with data warnings")
    p.add_argument("cuts", nargs="+", type=Path, help="cut manifests (.jsonl.gz)")
    p.add_argument("--outlier-factor", type=float, default=3.0, help="IQR multiple for duration outliers")
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser("export-shar", help="write manifests with their audio (or features) as lhotse Shar shards",
                       epilog="example: speechalign export-shar --cuts data/kespeech_cuts_train.jsonl.gz "
                              "--out data/shar/kespeech_train --shard-size 1000")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="cut manifests (.jsonl.gz) to export")
    p.add_argument("--out", type=Path, required=True, help="new Shar directory (must not exist)")
    p.add_argument("--shard-size", type=int, default=1000, help="cuts per shard")
    p.add_argument("--features", action="store_true",
                   help="export precomputed features (manifests from compute-features) instead of audio")
    p.add_argument("--audio-format", default="flac", help="audio codec inside the shards (flac, wav, opus, ...)")
    p.add_argument("--num-jobs", type=int, default=1, help="processes writing shards in parallel")
    p.set_defaults(func=_cmd_export_shar)

    p = sub.add_parser("compute-features", help="precompute the encoder's front end (lilcom) for data.features=precomputed",
                       epilog="example: speechalign compute-features --config recipes/synth_conformer_ctc.yaml "
                              "--cuts data/synth_cuts_train.jsonl.gz --out-dir data/feats")
    p.add_argument("--config", type=Path, required=True, help="the recipe whose encoder front end to run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="cut manifests (.jsonl.gz)")
    p.add_argument("--out-dir", type=Path, required=True, help="where <manifest name> and its features go")
    p.add_argument("--num-jobs", type=int, default=1, help="extraction processes")
    p.set_defaults(func=_cmd_compute_features)


def _add_prepare(subparsers, adapters: bool = True) -> None:
    """``adapters=False`` registers the command without its corpora."""
    from data_prep import ADAPTERS

    p = subparsers.add_parser("prepare", help="write Lhotse cut manifests for a corpus")
    corpora = p.add_subparsers(dest="corpus", required=True, metavar="<corpus>")
    for name in ADAPTERS if adapters else ():
        importlib.import_module(f"data_prep.{name}").add_cli(corpora)


def _cmd_stats(args) -> None:
    from speechalign.data.stats import manifest_stats

    stats = manifest_stats(args.cuts, outlier_factor=args.outlier_factor)
    print(stats.table())
    for w in stats.warnings:
        log.warning(w)


def _cmd_export_shar(args) -> None:
    from speechalign.data.shar import export_shar

    print(export_shar(args.cuts, args.out, args.shard_size, args.features, args.audio_format, args.num_jobs))


def _cmd_compute_features(args) -> None:
    from speechalign.config import load_config
    from speechalign.data.features import compute_features, frontend_for

    front = frontend_for(load_config(args.config, args.set))
    for path in args.cuts:
        print(compute_features(path, args.out_dir, front, args.num_jobs))
