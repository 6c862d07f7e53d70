"""Stage *decode*: decoding and transcription, n-gram LMs, the zero-shot Whisper baseline, scoring."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechalign.cli.common import add_skip_bad, require_cuts

log = logging.getLogger("speechalign")

TITLE = "decode: transcripts, CER and BLEU reports"


def register(sub, command: str | None = None) -> None:
    from speechalign.decode import MODES

    p = sub.add_parser("decode", help="decode manifests; per-dialect CER reports in <exp>/decode/<checkpoint>/")
    p.add_argument("--exp-dir", type=Path, required=True, help="trained experiment directory")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="cut manifests (.jsonl.gz) to decode")
    p.add_argument("--mode", nargs="+", choices=MODES, default=["ctc_greedy"],
                   help="one or more decoding modes, each written to its own reports (default: ctc_greedy)")
    p.add_argument("--beam", type=int, default=10, help="beam size of the beam-search modes")
    p.add_argument("--max-length", type=int, help="most tokens per hypothesis of attention_beam and joint_beam "
                   "(default: the decoder's limit; a dry run caps an untrained model with it)")
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
    p.add_argument("--router", type=Path, help="a train-router file of this checkpoint: each utterance is decoded by "
                   "the checkpoint its predicted variety is routed to (attention_beam; reports named <mode>+route)")
    add_engine_options(p)
    p.add_argument("--pack", action="store_true", help="a Whisper experiment trained in 30-s windows reads several "
                   "cuts per window (data.pack.gap apart) and each window's text is split back by CTC alignment: "
                   "no 30-s window per utterance (reports named <mode>+packed)")
    add_vad_options(p)
    add_skip_bad(p)
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser("train-router", help="fit a variety router on a checkpoint's pooled encoder states, for "
                       "decode --router (e.g. Mandarin to the pretrained weights)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  speechalign interpolate --exp-dir exp/x --checkpoint avg-last3 --alpha 0 "
                              "--parts encoder decoder\n"
                              "  speechalign train-router --exp-dir exp/x --checkpoint avg-last3 --cuts train.jsonl.gz \\\n"
                              "      --dev dev.jsonl.gz --route Mandarin=wise-decoder+encoder-0\n"
                              "  speechalign decode --exp-dir exp/x --checkpoint avg-last3 --cuts test.jsonl.gz \\\n"
                              "      --mode attention_beam --router exp/x/router-avg-last3.safetensors")
    p.add_argument("--exp-dir", type=Path, required=True, help="trained experiment directory")
    p.add_argument("--checkpoint", default="latest", help="the checkpoint whose states the router reads and that "
                   "decodes every variety without a route")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="training cut manifests (their variety labels "
                   "are the classifier's targets)")
    p.add_argument("--route", nargs="+", required=True, metavar="VARIETY=CHECKPOINT",
                   help="where a variety goes, e.g. Mandarin=wise-decoder+encoder-0 (a checkpoint of the experiment)")
    p.add_argument("--dev", type=Path, nargs="*", default=[], help="manifests routed and reported per variety, "
                   "never fitted")
    p.add_argument("--layer", type=int, default=-1, help="encoder state the router pools (default -1: the last)")
    p.add_argument("--out", type=Path, help="router file (default <exp>/router-<checkpoint>.safetensors)")
    p.add_argument("--max-duration", type=float, default=120.0, help="seconds of audio per batch")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.set_defaults(func=_cmd_train_router)

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

    p = sub.add_parser("transcribe", help="transcribe audio files of any length (VAD segments with times; TXT, TSV, "
                       "SRT, WebVTT, JSON)", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  speechalign transcribe rec.wav --exp-dir exp/demo --checkpoint avg-last3\n"
                              "  speechalign transcribe lesson.mp3 --exp-dir exp/goo-gi/whisper_base_hybrid_packed_enc "
                              "--checkpoint avg-last3 \\\n      --mode attention_beam --engine ct2 --output-dir subs "
                              "--output-format srt vtt json\n"
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
    p.add_argument("--router", type=Path, help="a train-router file of this checkpoint: each file (or long-form "
                   "window) is decoded by the checkpoint its predicted variety is routed to (--mode attention_beam)")
    add_engine_options(p)
    p.add_argument("--long-form", default="auto", choices=("auto", "on", "off"),
                   help="auto: a file longer than the encoder's window (30 s for Whisper) is split into VAD speech "
                        "segments, a shorter one read whole; on: always the VAD; off: never (default: auto)")
    p.add_argument("--no-pack", dest="pack", action="store_false", default=None,
                   help="long-form with a 30-s-window Whisper: one VAD segment per window instead of consecutive "
                        "segments packed into windows and split back by CTC alignment")
    add_vad_options(p)
    p.add_argument("--output-dir", type=Path, help="write each file's timed segments here as <name>.<format>")
    p.add_argument("--output-format", nargs="+", default=["txt"], choices=("txt", "tsv", "srt", "vtt", "json"),
                   help="formats written to --output-dir (default: txt)")
    add_skip_bad(p)
    p.set_defaults(func=_cmd_transcribe)

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


def add_engine_options(p) -> None:
    p.add_argument("--engine", default="torch", choices=("torch", "ct2"),
                   help="torch: speechalign's search in any mode; ct2: a Whisper experiment's attention_beam in "
                        "CTranslate2, batched (the checkpoint converted once, cached in <exp>/ct2/ by its weights' "
                        "SHA-256; reports named <mode>+ct2) (default: torch)")
    p.add_argument("--compute-type", help="CTranslate2 compute type (default: int8 on CPU, float16 on GPU)")


def add_vad_options(p) -> None:
    p.add_argument("--vad-threshold", type=float, default=0.5, help="Silero VAD speech probability threshold "
                   "(default 0.5)")
    p.add_argument("--vad-min-silence-ms", type=int, default=300, help="silence that ends a speech segment "
                   "(default 300 ms)")
    p.add_argument("--vad-speech-pad-ms", type=int, default=100, help="padding on each side of a segment "
                   "(default 100 ms)")
    p.add_argument("--vad-max-segment", type=float, default=30.0, help="longest segment in seconds (default 30)")


def _vad(args):
    from speechalign.decode.longform import VadSettings

    return VadSettings(threshold=args.vad_threshold, min_silence_ms=args.vad_min_silence_ms,
                       speech_pad_ms=args.vad_speech_pad_ms, max_segment_s=args.vad_max_segment)


def _cmd_decode(args) -> None:
    from speechalign.decode.run import decode

    require_cuts(args.cuts, "--cuts")
    for mode in args.mode:
        decode(args.exp_dir, args.cuts, mode=mode, beam=args.beam, checkpoint=args.checkpoint,
               ctc_weight=args.ctc_weight, max_duration=args.max_duration, device=args.device,
               skip_bad=args.skip_bad, lm=_lm_options(args), force_cpu_search=args.cpu_search, router=args.router,
               engine=args.engine, pack=args.pack, compute_type=args.compute_type, vad=_vad(args),
               max_length=args.max_length)


def _cmd_train_router(args) -> None:
    from speechalign.decode.router import parse_routes, train_router

    require_cuts(args.cuts, "--cuts")
    require_cuts(args.dev, "--dev")
    router, out = train_router(args.exp_dir, args.cuts, parse_routes(args.route), args.checkpoint, args.layer,
                               args.dev, args.out, args.max_duration, args.device)
    for name, d in router.fit.get("dev", {}).items():
        print(f"{name}: routes right for {100 * d['accuracy']:.1f} % of cuts; per variety {d['routed']}")
    print(f"router -> {out}")


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

    require_cuts(args.cuts, "--cuts")
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

    require_cuts(args.cuts, "--cuts")
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
                           variety=args.variety, router=args.router, engine=args.engine, long_form=args.long_form,
                           vad=_vad(args), pack=args.pack, output_dir=args.output_dir,
                           formats=args.output_format if args.output_dir else [], compute_type=args.compute_type)
    for path, text in zip(args.audio, texts):
        if text is not None:
            print(f"{path}\t{text}")
    if None in texts:
        log.warning("transcribe: %d of %d file(s) skipped as unreadable", texts.count(None), len(texts))


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
