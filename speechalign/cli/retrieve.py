"""Stage *retrieve*: embeddings of every layer, cross-dialect retrieval, layer sweeps, the text cascade."""

from __future__ import annotations

import argparse
from pathlib import Path

from speechalign.cli.common import add_skip_bad

TITLE = "retrieve: embeddings and cross-dialect retrieval"


def register(sub, command: str | None = None) -> None:
    p = sub.add_parser("embed", help="per-layer pooled (and frame) embeddings of manifests")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="cut manifests (.jsonl.gz) to embed")
    p.add_argument("--out", type=Path, required=True, help="embedding directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--exp-dir", type=Path, help="a trained experiment")
    src.add_argument("--encoder-dir", "--encoder", type=Path, dest="encoder_dir",
                     help="a transformers speech encoder, a directory or a hub id: hubert, wavlm, data2vec-audio, "
                          "wav2vec2-bert, wav2vec2-conformer, wav2vec2 (MMS, XLS-R) or whisper (e.g. import-whisper "
                          "output)")
    src.add_argument("--features", choices=("fbank", "mfcc"), help="acoustic-feature baseline")
    p.add_argument("--checkpoint", default="latest", help="with --exp-dir: latest | step-N | avg-last5 | path")
    p.add_argument("--random-init", action="store_true", help="same architecture, random weights (baseline)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init weights")
    p.add_argument("--length-mode", choices=("trim", "pad30"),
                   help="Whisper: trim (real frames only) or pad30 (as Whisper was pretrained). --encoder-dir: "
                        "default trim; --exp-dir: default the mode it was trained in, another one is a read-out probe "
                        "(recorded in info.yaml beside the trained mode)")
    p.add_argument("--layers", default="all", help="'all' or comma-separated indices (0 = input, -1 = top)")
    p.add_argument("--pool", nargs="+", default=["mean"], choices=("mean", "max", "meanstd"),
                   help="pooled vectors to store per layer (meanstd = mean and standard deviation concatenated)")
    p.add_argument("--frames", action="store_true", help="also store frame states (float16) for SeqSim")
    p.add_argument("--pack", action="store_true", help="Whisper read in 30-s windows (pad30): several utterances per "
                   "window, --pack-gap s apart, as packed training read them; each pools its own frames (no 30-s "
                   "window per utterance)")
    p.add_argument("--pack-gap", type=float, default=0.3, help="seconds between packed utterances (default 0.3, "
                   "the recipes' data.pack.gap)")
    p.add_argument("--shard-size", type=int, default=256, help="utterances per shard file (a rerun skips done shards)")
    p.add_argument("--max-duration", type=float, default=120.0, help="seconds of audio per batch")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    add_skip_bad(p)
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("retrieve", help="cross-dialect retrieval: R@k/MRR per dialect pair, or the YuBao matrix;"
                       " several --protocol/--center/--layer values run every combination")
    _add_search_options(p, several=True)
    p.add_argument("--layer", default="-1", help="layer index (-1 = top), comma-separated indices, or 'all'")
    p.add_argument("--protocol", nargs="+", default=["pooled"], choices=("pooled", "seqsim", "rerank", "yubao", "fleurs"),
                   help="pooled cosine, exact SeqSim, pooled shortlist re-ranked by SeqSim, the YuBao site-pair "
                        "protocol, or FLEURS (first recording per prompt)")
    p.add_argument("--yubao-mode", nargs="+", default=["seqsim"], choices=("pooled", "seqsim", "rerank"),
                   help="scoring inside --protocol yubao (several: each one)")
    p.add_argument("--fleurs-mode", default="seqsim", choices=("pooled", "seqsim", "rerank"),
                   help="scoring inside --protocol fleurs")
    p.add_argument("--diagonal", action="store_true", help="YuBao: fill the diagonal from distinct sites (extension)")
    p.add_argument("--map", choices=("procrustes",), help="orthogonal map per dialect pair")
    p.add_argument("--map-train", type=Path, help="embedding dir of disjoint parallel pairs for --map")
    p.set_defaults(func=_cmd_retrieve)

    p = sub.add_parser(
        "retrieve-text", help="cascade baseline: retrieve's YuBao matrix and R@k/MRR tables over transcripts "
        "(char n-gram TF-IDF cosine) instead of encoder states", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="examples:\n  speechalign retrieve-text --texts exp/zs/recogs-goo-gi_test-whisper_greedy.txt "
                    "--cuts data/manifests/goo-gi_cuts_test.jsonl.gz \\\n      --protocol yubao pairs "
                    "--out exp/r/cascade-zero-shot\n  speechalign retrieve-text --texts "
                    "data/manifests/tw-hokkien_cuts_test.jsonl.gz --query Hokkien --gallery Mandarin "
                    "--out exp/r/text-ceiling\n  speechalign compare yubao whisper=exp/r/whisper-base "
                    "cascade-zero-shot=exp/r/cascade-zero-shot --out exp/r/yubao-compare")
    texts = p.add_mutually_exclusive_group(required=True)
    texts.add_argument("--texts", type=Path,
                       help="a recogs-<set>-<mode>.txt of decode/decode-whisper, or a manifest (its reference "
                            "transcripts: the text ceiling)")
    texts.add_argument("--systems", nargs="+", metavar="NAME=TEXTS",
                       help="several such files in one process, each into <out>/NAME and named NAME in its titles")
    p.add_argument("--cuts", type=Path,
                   help="manifest with the cuts' dialect, sentence_id, site and subgroup (required for a recogs file; "
                        "default: --texts when it is a manifest)")
    p.add_argument("--field", default="hyp", choices=("hyp", "ref"),
                   help="recogs file: compare the hypotheses (default) or the references it holds")
    p.add_argument("--protocol", nargs="+", default=["pairs"], choices=("pairs", "yubao"),
                   help="pairs: R@1/5/10 and MRR per ordered dialect pair (text-tfidf.tsv, for compare pairs); yubao: "
                        "the site-pair protocol (yubao-text-tfidf.tsv, for compare yubao)")
    p.add_argument("--out", type=Path, required=True,
                   help="result dir, one per system (as <emb-dir>/retrieval): compare yubao LABEL=DIR reads it; "
                        "with --systems, the dir that holds one per system")
    p.add_argument("--name", help="what the texts are, in the tables' titles, e.g. cascade-zero-shot "
                                  "(default: the --out directory name)")
    p.add_argument("--query", help="pairs: only this query dialect")
    p.add_argument("--gallery", help="pairs: only this gallery dialect")
    p.add_argument("--diagonal", action="store_true", help="yubao: fill the diagonal from distinct sites (extension)")
    p.set_defaults(func=_cmd_retrieve_text)

    p = sub.add_parser("sweep", help="R@1 per layer (pooled and SeqSim) with a plot; names the best layer")
    _add_search_options(p)
    p.add_argument("--no-seqsim", action="store_true", help="pooled only, even if frames are stored")
    p.set_defaults(func=_cmd_sweep, layer=-1)


def _add_search_options(p, several: bool = False) -> None:
    from speechalign.retrieval import INDEXES

    p.add_argument("--emb-dir", type=Path, required=True, help="output of `speechalign embed`")
    p.add_argument("--out", type=Path, help="result dir (default: <emb-dir>/retrieval)")
    p.add_argument("--pool", default="mean", choices=("mean", "max", "meanstd"),
                   help="which stored pooled vectors to search (embed --pool)")
    p.add_argument("--center", choices=("none", "dialect"), nargs="+" if several else None,
                   default=["none"] if several else "none", help="subtract each dialect's mean")
    p.add_argument("--index", default="flat", choices=INDEXES,
                   help="FAISS index over pooled vectors: flat (exact), ivf or hnsw (approximate, large galleries)")
    p.add_argument("--nlist", type=int, default=1024, help="ivf: number of inverted lists (capped at gallery/39)")
    p.add_argument("--nprobe", type=int, default=16, help="ivf: lists visited per query")
    p.add_argument("--hnsw-m", type=int, default=32, help="hnsw: neighbours per graph node")
    p.add_argument("--ef-search", type=int, default=64, help="hnsw: candidate list size at search time")
    p.add_argument("--rerank-k", type=int, default=10, help="shortlist size for SeqSim re-ranking")
    p.add_argument("--query", help="only this query dialect")
    p.add_argument("--gallery", help="only this gallery dialect")


def _cmd_embed(args) -> None:
    from speechalign.retrieval.embed import build_source, embed

    encoder, source = build_source(args.exp_dir, args.encoder_dir, args.features, args.checkpoint,
                                   args.random_init, args.seed, args.length_mode)
    embed(args.cuts, args.out, encoder, source, layers=args.layers, pooling=tuple(args.pool), frames=args.frames,
          shard_size=args.shard_size, max_duration=args.max_duration, device=args.device, skip_bad=args.skip_bad,
          pack_gap=args.pack_gap if args.pack else None)


def _retrieval_options(args):
    from speechalign.retrieval.run import RetrievalOptions
    from speechalign.retrieval.search import IndexConfig

    return RetrievalOptions(
        layer=args.layer if isinstance(args.layer, int) else -1, protocol="pooled", pool=args.pool,
        center=args.center == "dialect",
        map_train=getattr(args, "map_train", None), rerank_k=args.rerank_k, query=args.query, gallery=args.gallery,
        index=IndexConfig(args.index, args.nlist, args.nprobe, args.hnsw_m, args.ef_search),
        yubao_mode=getattr(args, "yubao_mode", ["seqsim"])[0], fleurs_mode=getattr(args, "fleurs_mode", "seqsim"),
        diagonal=getattr(args, "diagonal", False))


def _cmd_retrieve(args) -> None:
    from dataclasses import replace

    from speechalign.retrieval.embed import EmbeddingStore
    from speechalign.retrieval.run import run_retrieve

    if args.map and not args.map_train:
        raise ValueError("retrieve: --map procrustes needs --map-train EMB_DIR (disjoint parallel pairs)")
    centers, args.center = args.center, None
    opts = _retrieval_options(args)
    if args.layer == "all":
        layers = EmbeddingStore.open(args.emb_dir).info["layers"]
    else:
        try:
            layers = [int(x) for x in args.layer.split(",")]
        except ValueError:
            raise ValueError(f"retrieve: --layer must be 'all' or comma-separated integers, got {args.layer!r}") from None
    # One process for every combination: loading torch and the embeddings once is most of a small run.
    for center in dict.fromkeys(centers):
        for protocol in dict.fromkeys(args.protocol):
            for yubao_mode in dict.fromkeys(args.yubao_mode) if protocol == "yubao" else [opts.yubao_mode]:
                for layer in layers:
                    run_retrieve(args.emb_dir, args.out or Path(args.emb_dir) / "retrieval",
                                 replace(opts, layer=layer, protocol=protocol, center=center == "dialect",
                                         yubao_mode=yubao_mode))


def _cmd_retrieve_text(args) -> None:
    from speechalign.cli.common import labelled
    from speechalign.retrieval.text import run_text_retrieve

    if args.systems and args.name:
        raise ValueError("retrieve-text: --name labels one --texts file; --systems names each NAME=TEXTS")
    systems = labelled(args.systems, "retrieve-text --systems", Path.is_file) if args.systems else \
        [(args.name, args.texts)]
    for name, texts in systems:
        out = run_text_retrieve(texts, args.out / name if args.systems else args.out, args.cuts,
                                tuple(args.protocol), name, args.field, args.query, args.gallery, args.diagonal)
        for key in ("yubao", "pairs"):
            if key in out:
                print(out[key]["paths"]["md"])


def _cmd_sweep(args) -> None:
    from speechalign.retrieval.run import run_sweep

    run_sweep(args.emb_dir, args.out or Path(args.emb_dir) / "retrieval", _retrieval_options(args),
              seqsim=not args.no_seqsim)
