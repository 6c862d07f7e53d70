"""The transformers peer (issue 20): fine-tune Whisper with ``Seq2SeqTrainer`` the way users do it instead
of installing speechalign, on speechalign's manifests, within a fixed budget; then evaluate it through
speechalign's stages.

It follows the "fine-tune Whisper" guide (huggingface.co/blog/fine-tune-whisper) and transformers'
``examples/pytorch/speech-recognition/run_speech_recognition_seq2seq.py``: the whole
``WhisperForConditionalGeneration`` trained, AdamW at lr 1e-5 with linear warmup and decay,
``language="zh"``, ``task="transcribe"``, ``WhisperFeatureExtractor`` log-mel padded to 30 s, the decoder's
cross-entropy only, a data collator padding labels with -100 (and dropping the decoder start token the model
prepends itself), fp32 on CPU. Every setting that differs from the guide is printed, with the reason, at the
top of ``<out>/peer.log`` and in ``<out>/settings.md``.

Data are speechalign manifests: the targets are each cut's (already normalized) ``text``, as speechalign's
recipe trains on; audio comes through the project's reader (``read_item``: decoded, resampled to 16 kHz,
checked). Training cuts are filtered as the recipe's trainer does (``UsableForTraining``: non-empty text,
0.3-20 s). The contamination filter is the manifests' own (``prepare --exclude-texts-from``): give the
recipe's manifests.

Outputs in ``--out``:

* ``model/``: the fine-tuned model (safetensors), its generation config and processor;
* ``encoder/``: its encoder as a transformers ``WhisperEncoder`` dir (what import-whisper writes), for
  ``speechalign embed --encoder-dir OUT/encoder --length-mode pad30`` (it was trained on 30-s windows);
* ``decode/``: per ``--eval`` manifest, greedy ``generate`` hypotheses ``hyp-<set>.txt`` (``id<TAB>text``),
  the references ``ref-<set>.txt`` and groups ``groups-<set>.txt`` (``id<TAB>variety``), scored at once
  as ``speechalign score --ref ... --hyp ... --groups ... --name <set>`` would (recogs/errs/cer-<set>-score);
* ``summary.json``: steps reached, minutes, stop reason, audio seconds trained, dev loss.

Usage:
  python bench/peer_hf_whisper.py --whisper-hf ~/.cache/speechalign/whisper-base/hf \\
      --train exp/real/data/goo-gi_cuts_train.jsonl.gz exp/real/data/lan-lai_cuts_train.jsonl.gz \\
      --dev exp/real/data/goo-gi_cuts_dev.jsonl.gz \\
      --eval exp/real/data/goo-gi_cuts_test.jsonl.gz exp/real/data/tw-hokkien_cuts_test.jsonl.gz \\
      --out exp/peer-hf [--max-steps 110] [--max-minutes M] [--dry-run]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from speechalign.data.dataset import UsableForTraining, read_item  # noqa: E402
from speechalign.data.manifest import cut_meta, load_cuts  # noqa: E402
from speechalign.text import normalize  # noqa: E402

log = logging.getLogger("bench.peer_hf_whisper")
SAMPLE_RATE = 16000
WINDOW_S = 30
LANGUAGE, TASK = "zh", "transcribe"
# openai/whisper's sample_len (n_text_ctx // 2) and CTranslate2's cap, so greedy decodes stop where
# decode-whisper's do; the guide's generation_max_length=225 is the same budget counted with the prompt.
MAX_NEW_TOKENS = 224

# What the guide sets (Seq2SeqTrainingArguments in huggingface.co/blog/fine-tune-whisper; the community
# event's run_speech_recognition_seq2seq_streaming.py runs use the same values) and TrainingArguments
# defaults it keeps.
GUIDE = {
    "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1, "learning_rate": 1e-5,
    "warmup_steps": 500, "max_steps": 5000, "gradient_checkpointing": True, "fp16": True,
    "eval_strategy": "steps", "eval_steps": 1000, "save_steps": 1000, "predict_with_generate": True,
    "generation_max_length": 225, "logging_steps": 25, "load_best_model_at_end": True,
    "metric_for_best_model": "wer", "per_device_eval_batch_size": 8, "max_duration_in_seconds": 30,
    "optim": "adamw_torch", "lr_scheduler_type": "linear", "weight_decay": 0.0, "max_grad_norm": 1.0,
    "seed": 42, "dataloader_num_workers": 0,
}


# ---------------------------------------------------------------------------------------------- data
def training_cuts(manifests: list[str | Path], min_s: float, max_s: float) -> tuple[list, dict[str, int]]:
    """Every cut of the manifests speechalign's trainer would keep (its own predicate), and why others went."""
    keep = UsableForTraining(min_s, max_s, frame_shift=0.02)   # Whisper encoder frames: 20 ms
    cuts, dropped = [], {}
    for path in manifests:
        for cut in load_cuts(path):
            reason = keep.reason(cut)
            if reason is None:
                cuts.append(cut)
            else:
                dropped[reason] = dropped.get(reason, 0) + 1
    return cuts, dropped


def within_window(cuts) -> tuple[list, list[str]]:
    """Cuts Whisper can take in one 30-s window, and the ids of those skipped (as decode-whisper does)."""
    kept = [c for c in cuts if c.duration <= WINDOW_S]
    return kept, [c.id for c in cuts if c.duration > WINDOW_S]


class PeerDataset(torch.utils.data.Dataset):
    """Cuts -> the guide's ``prepare_dataset`` output: ``input_features`` (30-s log-mel) and ``labels``
    (``<|startoftranscript|><|zh|><|transcribe|><|notimestamps|> text <|endoftext|>``). An unreadable cut
    is ``None`` (logged), dropped by the collator."""

    def __init__(self, cuts: list, processor):
        self.cuts, self.processor = list(cuts), processor

    def __len__(self) -> int:
        return len(self.cuts)

    def __getitem__(self, i: int) -> dict | None:
        cut = self.cuts[i]
        try:
            audio = read_item(cut)
        except ValueError as e:
            log.warning("cut %s: %s (dropped from its batch)", cut.id, e)
            return None
        feats = self.processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE).input_features[0]
        text = normalize(cut_meta(cut)["text"])
        return {"input_features": feats, "labels": self.processor.tokenizer(text).input_ids,
                "seconds": len(audio) / SAMPLE_RATE}


@dataclass
class DataCollatorSpeechSeq2SeqWithPadding:
    """The guide's collator: pad features and labels, labels' padding -> -100, drop a leading decoder
    start token (the model prepends it when it shifts the labels right). It also passes the batch's audio
    seconds (``audio_seconds``), which :class:`PeerTrainer` counts and removes before the model sees it."""

    processor: object
    decoder_start_token_id: int
    dropped: int = 0

    def __call__(self, features: list[dict | None]) -> dict:
        good = [f for f in features if f is not None]
        self.dropped += len(features) - len(good)
        if not good:
            raise ValueError("a whole batch was unreadable (see the warnings above)")
        batch = self.processor.feature_extractor.pad([{"input_features": f["input_features"]} for f in good],
                                                     return_tensors="pt")
        labels_batch = self.processor.tokenizer.pad([{"input_ids": f["labels"]} for f in good], return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        batch["audio_seconds"] = torch.tensor(sum(f["seconds"] for f in good), dtype=torch.float64)
        return batch


# ---------------------------------------------------------------------------------------------- model
def load_peer(hf_dir: str | Path):
    """The pretrained model and processor, configured as the guide does."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    hf_dir = Path(hf_dir).expanduser()
    if not (hf_dir / "config.json").is_file():
        raise FileNotFoundError(f"{hf_dir}: no config.json; give the hf/ dir fetch-pretrained writes "
                                "(speechalign export-whisper-hf --whisper-dir DIR writes one)")
    processor = WhisperProcessor.from_pretrained(str(hf_dir), language=LANGUAGE, task=TASK)
    # The fast tokenizer only stores language/task; its tokenizer.json template still says <|startoftranscript|>
    # <|notimestamps|>. set_prefix_tokens installs the guide's label prefix (what its slow WhisperTokenizer
    # writes): <|startoftranscript|><|zh|><|transcribe|><|notimestamps|> text <|endoftext|>.
    processor.tokenizer.set_prefix_tokens(language=LANGUAGE, task=TASK)
    model = WhisperForConditionalGeneration.from_pretrained(str(hf_dir))
    model.generation_config.language = LANGUAGE
    model.generation_config.task = TASK
    model.generation_config.forced_decoder_ids = None
    return model, processor


class TimeBudget:
    """TrainerCallback stopping training after ``minutes`` of wall clock (from the first step), and timing
    every optimizer step: ``compute`` from on_step_begin (its batches already collated) to on_step_end,
    ``wall`` between consecutive on_step_end (loading included)."""

    def __init__(self, minutes: float):
        from transformers import TrainerCallback

        self.minutes = minutes
        self.trainer = None   # set once the trainer exists: its audio_seconds counter
        self.start = self.last_end = self.step_start = None
        self.compute: list[float] = []
        self.wall: list[float] = []
        self.audio: list[float] = []
        self.stopped_by_time = False
        self._seconds_at_end = 0.0
        budget = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                budget.start = budget.last_end = time.perf_counter()

            def on_step_begin(self, args, state, control, **kw):
                budget.step_start = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                now = time.perf_counter()
                budget.compute.append(now - budget.step_start)
                budget.wall.append(now - budget.last_end)
                seconds = budget.trainer.audio_seconds if budget.trainer is not None else 0.0
                budget.audio.append(seconds - budget._seconds_at_end)
                budget._seconds_at_end, budget.last_end = seconds, now
                if budget.minutes and now - budget.start >= 60 * budget.minutes:
                    budget.stopped_by_time = True
                    control.should_training_stop = True
                return control

            def on_log(self, args, state, control, logs=None, **kw):
                if logs:
                    log.info("step %d: %s", state.global_step,
                             ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items()))

        self.callback = _Callback()

    @property
    def elapsed_minutes(self) -> float:
        return (self.last_end - self.start) / 60 if self.start is not None else 0.0


def training_args(out: Path, batch_size: int, accum: int, max_steps: int, warmup: int, seed: int,
                  eval_steps: int, logging_steps: int, has_dev: bool):
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accum, learning_rate=GUIDE["learning_rate"], warmup_steps=warmup,
        max_steps=max_steps, gradient_checkpointing=False, fp16=False, bf16=False, use_cpu=True,
        eval_strategy="steps" if has_dev and eval_steps else "no", eval_steps=eval_steps or None,
        per_device_eval_batch_size=GUIDE["per_device_eval_batch_size"], predict_with_generate=False,
        save_strategy="no", logging_steps=logging_steps, report_to=[], seed=seed, data_seed=seed,
        optim=GUIDE["optim"], lr_scheduler_type=GUIDE["lr_scheduler_type"], weight_decay=GUIDE["weight_decay"],
        max_grad_norm=GUIDE["max_grad_norm"], dataloader_num_workers=0, remove_unused_columns=False,
        label_names=["labels"], disable_tqdm=True, save_safetensors=True)


def _peer_trainer_class():
    from transformers import Seq2SeqTrainer

    class PeerTrainer(Seq2SeqTrainer):
        """``Seq2SeqTrainer`` counting the audio seconds and utterances it trains on (when they are consumed:
        the loader prefetches batches), its loss untouched."""

        audio_seconds = 0.0
        utterances = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            seconds = inputs.pop("audio_seconds", None)
            if model.training and seconds is not None:
                self.audio_seconds += float(seconds)
                self.utterances += int(inputs["labels"].shape[0])
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return PeerTrainer


def make_trainer(model, processor, args, train_set, dev_set, collator, callbacks=()):
    """The guide's ``Seq2SeqTrainer`` (feature extractor as its processing class), logging through ours."""
    from transformers.trainer_callback import PrinterCallback

    trainer = _peer_trainer_class()(model=model, args=args, train_dataset=train_set, eval_dataset=dev_set,
                                    data_collator=collator, processing_class=processor.feature_extractor,
                                    callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)   # the TimeBudget callback logs the same dicts
    return trainer


def save_encoder(model, out: Path, processor=None) -> Path:
    """The encoder as import-whisper lays it out: a transformers ``WhisperEncoder`` dir."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = copy.deepcopy(model.config)
    config.architectures = ["WhisperEncoder"]
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(model.model.encoder.state_dict(), strict=True)
    encoder.save_pretrained(str(out), safe_serialization=True)
    if processor is not None:
        processor.feature_extractor.save_pretrained(str(out))
    return out


# ---------------------------------------------------------------------------------------------- eval
def set_name(path: str | Path) -> str:
    """``goo-gi_cuts_test.jsonl.gz`` -> ``goo-gi_test``, as decode and decode-whisper name sets."""
    return Path(path).name.split(".")[0].replace("_cuts_", "_")


class _quiet_transformers:
    """Whisper's generate warns on every call about defaults it handles itself (suppress tokens, attention
    mask of unpadded 30-s windows); errors still show."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self.level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self.level)


def _one_line(text: str) -> str:
    return " ".join(text.replace("\t", " ").splitlines()).strip()


def transcribe_manifest(model, processor, manifest: str | Path, out_dir: Path, batch_size: int,
                        max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """Greedy ``generate`` on every cut (over 30 s: skipped and counted), written as id<TAB>text files and
    scored with speechalign's normalization and per-variety grouping."""
    from speechalign.decode.report import cer_table
    from speechalign.decode.run import score_files

    name = set_name(manifest)
    cuts, skipped = within_window(list(load_cuts(manifest)))
    if skipped:
        log.warning("%s: skipped %d cut(s) longer than %d s (one Whisper window), e.g. %s", name, len(skipped),
                    WINDOW_S, skipped[:3])
    hyps, refs, groups, unreadable = {}, {}, {}, []
    start, audio_s = time.perf_counter(), 0.0
    model.eval()
    for i in range(0, len(cuts), batch_size):
        batch, audio = [], []
        for cut in cuts[i : i + batch_size]:
            try:
                audio.append(read_item(cut))
                batch.append(cut)
            except ValueError as e:
                log.warning("cut %s: %s (no hypothesis; scored as empty output)", cut.id, e)
                unreadable.append(cut.id)
        for cut in cuts[i : i + batch_size]:
            meta = cut_meta(cut)
            refs[cut.id], groups[cut.id] = _one_line(meta["text"]), meta["dialect"]
        if not batch:
            continue
        feats = processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.no_grad(), _quiet_transformers():
            ids = model.generate(feats, language=LANGUAGE, task=TASK, num_beams=1, do_sample=False,
                                 max_new_tokens=max_new_tokens)
        for cut, text in zip(batch, processor.batch_decode(ids, skip_special_tokens=True)):
            hyps[cut.id] = _one_line(text)
        audio_s += sum(len(a) for a in audio) / SAMPLE_RATE
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, rows in (("ref", refs), ("hyp", hyps), ("groups", groups)):
        files[kind] = out_dir / f"{kind}-{name}.txt"
        files[kind].write_text("".join(f"{k}\t{v}\n" for k, v in sorted(rows.items())), encoding="utf-8")
    scorer = score_files(files["ref"], files["hyp"], files["groups"], out_dir, name)
    rtf = (time.perf_counter() - start) / max(audio_s, 1e-9)
    log.info("%s: %d hypotheses (RTF %.3f), CER per variety:\n%s", name, len(hyps), rtf, cer_table(scorer, "md"))
    overall = dict(scorer.rows()).get("overall")
    return {"set": name, "utterances": len(hyps), "skipped_over_30s": len(skipped), "unreadable": len(unreadable),
            "rtf": rtf, "cer_overall": None if overall is None else 100 * overall.cer,
            "hyp": str(files["hyp"]), "ref": str(files["ref"]), "groups": str(files["groups"]),
            "score_command": f"speechalign score --ref {files['ref']} --hyp {files['hyp']} --groups {files['groups']} "
                             f"--out-dir {out_dir} --name {name}"}


# ---------------------------------------------------------------------------------------------- settings
def differences(args, warmup: int, max_steps: int, max_new_tokens: int) -> list[tuple[str, str, str, str]]:
    """(setting, guide, here, why) for every setting that is not the guide's."""
    effective = args.batch_size * args.grad_accum
    rows = [
        ("device / precision", "CUDA GPU, fp16=True", "CPU, fp32",
         "the budget is 2 CPU cores (fp16 training is a GPU feature; the issue asks fp32 on CPU)"),
        ("time budget", "none (max_steps only)", f"{args.max_minutes:g} min wall clock (TrainerCallback)",
         "a wall-clock cap on the same 2 cores; the steps reached are reported") if args.max_minutes > 0 else
        ("time budget", "none (max_steps only)", "none (max_steps only)",
         ""),
        ("max_steps", str(GUIDE["max_steps"]), str(max_steps),
         "5000 steps of 16 padded 30-s windows do not fit a 60-minute budget on 2 cores; the budget is the "
         "number of steps that does on an idle machine (~30 s per update, bench/train_throughput.py), so a "
         "slower machine trains the same model, and the linear decay ends with it"),
        ("warmup_steps", str(GUIDE["warmup_steps"]), str(warmup),
         "the guide's warmup share (500 of 5000 steps = 10 %) kept for the shorter run; 500 steps would never "
         "reach lr 1e-5 within the budget"),
        ("per_device_train_batch_size x gradient_accumulation_steps", "16 x 1",
         f"{args.batch_size} x {args.grad_accum} (= {effective})",
         f"the guide's 16 utterances per update, as {args.grad_accum} micro-batches of {args.batch_size}: the same "
         "update with a fraction of the activation memory (the 2-core machine is shared)" if effective == 16
         else "chosen for 2 CPU cores (see --batch-size / --grad-accum)"),
        ("gradient_checkpointing", "True", "False",
         "it saves GPU memory at ~30 % more compute; RAM is not the limit on CPU, time is"),
        ("evaluation during training", "every 1000 steps, predict_with_generate, WER, load_best_model_at_end",
         f"dev loss {'every %d steps and ' % args.eval_steps if args.eval_steps else ''}at the end; greedy "
         "generate + CER by speechalign score after training",
         "generation-based evaluation inside the budget would take training time; the last model is kept, "
         "as speechalign's recipe keeps its averaged last checkpoints, and it is scored by the same stage"),
        ("checkpoints", "save_steps=1000", "save_strategy=no; the final model (safetensors)",
         "no intermediate checkpoint is used"),
        ("logging / reporting", "logging_steps=25, report_to=tensorboard, push_to_hub",
         f"logging_steps={args.logging_steps}, the log file, no hub", "offline, one log"),
        ("max utterance length", "max_duration_in_seconds=30", f"{args.min_duration:g}-{args.max_duration:g} s, "
         "non-empty text (speechalign's UsableForTraining)", "the same training cuts as speechalign's recipe"),
        ("targets", "the dataset's sentences as they are", "each cut's normalized text (speechalign's normalize: "
         "no punctuation or spaces, simplified characters)", "the same targets as speechalign's recipe; CER is "
         "scored on normalized text anyway"),
        ("data", "a datasets.Dataset, features precomputed with .map", "speechalign manifests read lazily "
         "(project reader, 16 kHz), features computed per item in the loader",
         "the same cuts and audio reader as speechalign; the feature time is counted in the budget"),
        ("corpus mixing", "one dataset", "train manifests concatenated, shuffled each epoch (seeded)",
         "speechalign's recipe draws corpora with lhotse mux weights instead; the guide has one dataset"),
        ("generation length", "generation_max_length=225", f"max_new_tokens={max_new_tokens}",
         "the same cap as decode-whisper's CTranslate2 decode (openai/whisper's sample_len)"
         + (" (dry run: shortened)" if max_new_tokens != MAX_NEW_TOKENS else "")),
        ("seed", str(GUIDE["seed"]), str(args.seed), "fixed, reported" if args.seed != GUIDE["seed"] else ""),
        ("threads", "all cores", f"torch.set_num_threads({args.threads})", "the 2 cores of the budget"),
    ]
    if args.dry_run:
        rows.insert(0, ("dry run", "-", "2 optimizer steps on the given data", "--dry-run: checks the pipeline"))
    return [r for r in rows if r[3]]


def settings_markdown(rows, argv: list[str]) -> str:
    lines = ["# transformers peer: settings that differ from the fine-tune Whisper guide", "",
             f"Command: `python bench/peer_hf_whisper.py {' '.join(shlex.quote(a) for a in argv)}`", "",
             "Kept from the guide: WhisperForConditionalGeneration, the whole model trained, Seq2SeqTrainer, "
             "AdamW (adamw_torch, betas 0.9/0.999, eps 1e-8, weight decay 0), learning_rate 1e-5, linear "
             "warmup then linear decay, max_grad_norm 1.0, language=\"zh\", task=\"transcribe\" "
             "(generation_config.forced_decoder_ids = None), WhisperFeatureExtractor 30-s padding, the "
             "decoder's cross-entropy only, labels padded with -100, dataloader_num_workers 0.", "",
             "| setting | guide | here | why |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  python bench/peer_hf_whisper.py --whisper-hf ~/.cache/speechalign/"
                                       "whisper-base/hf --train TRAIN.jsonl.gz --dev DEV.jsonl.gz --eval TEST.jsonl.gz "
                                       "--out exp/peer-hf --max-steps 110")
    p.add_argument("--whisper-hf", required=True, type=Path,
                   help="a WhisperForConditionalGeneration dir: fetch-pretrained's <out>/hf (or export-whisper-hf)")
    p.add_argument("--train", nargs="+", required=True, type=Path, help="training manifests (.jsonl.gz)")
    p.add_argument("--dev", type=Path, help="dev manifest: its loss at the end (and every --eval-steps)")
    p.add_argument("--eval", nargs="*", default=[], type=Path, help="manifests to transcribe and score after training")
    p.add_argument("--out", required=True, type=Path, help="output dir (model/, encoder/, decode/, settings.md, peer.log)")
    p.add_argument("--max-steps", type=int, default=110,
                   help="optimizer steps (default 110: 60 minutes on an idle 2-core machine; see settings.md)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="a wall-clock cap as well (default 0: none)")
    p.add_argument("--warmup-steps", type=int, help="default: 10 %% of --max-steps (the guide's 500 of 5000)")
    p.add_argument("--batch-size", type=int, default=4, help="utterances per micro-batch (default 4)")
    p.add_argument("--grad-accum", type=int, default=4, help="micro-batches per update (default 4: 16 per update)")
    p.add_argument("--eval-batch-size", type=int, default=GUIDE["per_device_eval_batch_size"],
                   help="utterances per generate call (default 8, the guide's)")
    p.add_argument("--eval-steps", type=int, default=0, help="dev loss every N steps (default 0: at the end only)")
    p.add_argument("--logging-steps", type=int, default=5, help="log the training loss every N steps (default 5)")
    p.add_argument("--min-duration", type=float, default=0.3, help="shortest training cut, s (recipe: 0.3)")
    p.add_argument("--max-duration", type=float, default=20.0, help="longest training cut, s (recipe: 20)")
    p.add_argument("--seed", type=int, default=GUIDE["seed"], help="seed of shuffling and data order (default 42, "
                   "TrainingArguments' default)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--dry-run", action="store_true", help="2 steps on the given data, short generation: a pipeline check")
    return p.parse_args(argv)


def _setup_logging(out: Path) -> logging.Handler:
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "peer.log", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.getLogger().addHandler(handler)
    if logging.getLogger().level > logging.INFO or logging.getLogger().level == logging.NOTSET:
        logging.getLogger().setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in logging.getLogger().handlers):
        console = logging.StreamHandler()
        console.setFormatter(handler.formatter)
        logging.getLogger().addHandler(console)
    return handler


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    handler = _setup_logging(args.out)
    hf_logging.set_verbosity_warning()
    try:
        return _run(args, argv)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _run(args, argv: list[str]) -> dict:
    from transformers import set_seed

    max_steps = 2 if args.dry_run else args.max_steps
    warmup = args.warmup_steps if args.warmup_steps is not None else (1 if args.dry_run else max(1, round(max_steps / 10)))
    max_new_tokens = 16 if args.dry_run else MAX_NEW_TOKENS
    if max_steps < 1 or args.batch_size < 1 or args.grad_accum < 1:
        raise SystemExit("--max-steps, --batch-size and --grad-accum must be >= 1")
    rows = differences(args, warmup, max_steps, max_new_tokens)
    settings = settings_markdown(rows, argv)
    (args.out / "settings.md").write_text(settings, encoding="utf-8")
    log.info("transformers peer, settings that differ from the fine-tune Whisper guide (also in %s):\n%s",
             args.out / "settings.md", settings)

    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    model, processor = load_peer(args.whisper_hf)
    cuts, dropped = training_cuts(args.train, args.min_duration, args.max_duration)
    if not cuts:
        raise SystemExit(f"no usable training cut in {[str(t) for t in args.train]} (dropped: {dropped})")
    too_long = {c.id for c in cuts if len(processor.tokenizer(normalize(cut_meta(c)["text"])).input_ids)
                > model.config.max_target_positions}
    if too_long:
        dropped[f"labels over {model.config.max_target_positions} tokens"] = len(too_long)
        cuts = [c for c in cuts if c.id not in too_long]
    log.info("training cuts: %d (%.1f min of audio) from %s; dropped %s", len(cuts),
             sum(c.duration for c in cuts) / 60, ", ".join(str(t) for t in args.train), dropped or "none")
    dev_set = None
    if args.dev:
        dev_cuts, dev_skipped = within_window(list(load_cuts(args.dev)))
        dev_set = PeerDataset(dev_cuts, processor)
        log.info("dev cuts: %d (%d over 30 s skipped)", len(dev_cuts), len(dev_skipped))
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    budget = TimeBudget(args.max_minutes)
    trainer = make_trainer(model, processor,
                           training_args(args.out, args.batch_size, args.grad_accum, max_steps, warmup, args.seed,
                                         args.eval_steps, 1 if args.dry_run else args.logging_steps, dev_set is not None),
                           PeerDataset(cuts, processor), dev_set, collator, [budget.callback])
    budget.trainer = trainer
    trainer.train()
    steps = trainer.state.global_step
    stop = "time budget" if budget.stopped_by_time else "max_steps"
    log.info("training: %d of %d steps in %.1f min (stopped by %s), %.0f s of audio in %d utterances (%d unreadable)",
             steps, max_steps, budget.elapsed_minutes, stop, trainer.audio_seconds, trainer.utterances,
             collator.dropped)
    summary = {"steps": steps, "max_steps": max_steps, "minutes": budget.elapsed_minutes, "stopped_by": stop,
               "audio_seconds_trained": trainer.audio_seconds, "utterances_trained": trainer.utterances,
               "unreadable": collator.dropped, "train_cuts": len(cuts), "warmup_steps": warmup,
               "batch_size": args.batch_size, "grad_accum": args.grad_accum, "seed": args.seed,
               "step_seconds_mean": sum(budget.wall) / len(budget.wall) if budget.wall else None,
               "audio_seconds_per_wall_second": trainer.audio_seconds / max(sum(budget.wall), 1e-9)}
    if dev_set is not None:
        metrics = trainer.evaluate()
        summary["dev_loss"] = metrics.get("eval_loss")
        log.info("dev loss %.4f", summary["dev_loss"])

    model_dir = args.out / "model"
    trainer.save_model(str(model_dir))            # safetensors + config + generation config
    processor.save_pretrained(str(model_dir))
    save_encoder(model, args.out / "encoder", processor)
    log.info("model in %s; encoder in %s (speechalign embed --encoder-dir %s --length-mode pad30)", model_dir,
             args.out / "encoder", args.out / "encoder")
    summary["eval"] = [transcribe_manifest(model, processor, m, args.out / "decode", args.eval_batch_size,
                                           max_new_tokens) for m in args.eval]
    for e in summary["eval"]:
        log.info("%s: %s", e["set"], e["score_command"])
    try:
        (args.out / "trainer").rmdir()   # save_strategy=no leaves it empty
    except OSError:
        pass
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(f"steps reached: {steps} of {max_steps} in {budget.elapsed_minutes:.1f} min (stopped by {stop}); "
          f"outputs in {args.out}")
    return summary


if __name__ == "__main__":
    main()
