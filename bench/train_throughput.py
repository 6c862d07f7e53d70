"""Training throughput side by side (issue 20): audio seconds trained per wall-clock second and peak RSS,
speechalign's trainer against the transformers peer, in one process, same model, cuts and batches.

* **speechalign**: a real ``Trainer`` built from a recipe (its model, freezing, optimizer groups, sampler),
  driven through its own ``_micro_step`` / ``_optimizer_step`` by ``bench/train_profile.py``'s
  ``run_profile`` (whatever those do is what is timed).
* **transformers peer**: ``bench/peer_hf_whisper.py``'s ``Seq2SeqTrainer`` (the fine-tune Whisper guide's
  model, collator, AdamW at lr 1e-5, 30-s log-mel windows, decoder loss only) on the recipe's Whisper as a
  full transformers model (``<model.whisper.pretrained>/hf``, as fetch-pretrained writes it), fed the very
  batches speechalign's sampler drew (same cut ids, so the same batch duration), with the recipe's
  gradient accumulation.
* ``--ablate pad30 frozen ctc packed packed_variety packed_window_teacher packed_align_pooled packed_align_seqsim``
  turns speechalign's differences off (or a loss term on) one at a time, a row each
  (``packed``: the cuts packed back to back into 30-s windows, 100 s of audio per batch):
  ``pad30`` = model.whisper.length_mode=pad30 (Whisper's 30-s padding instead of trimming to the audio);
  ``frozen`` = nothing frozen (front end, first layers and decoder embedding trained);
  ``ctc`` = model.ctc_weight=0 (the attention decoder's loss only; the CTC head's forward still runs).

Throughput = audio seconds of the measured steps / their compute time (forward, backward, optimizer; the
loaders run in-process and are reported apart, since speechalign's loader workers overlap them and the guide
precomputes features). Peak RSS is sampled (psutil, every 20 ms) while each row runs, after the rows before it
were freed; the process's lifetime peak (getrusage) is printed too. Warm-up steps are excluded.

Usage: python bench/train_throughput.py --config recipes/real_whisper_base_hybrid.yaml \\
         --cuts exp/real/data/goo-gi_cuts_train.jsonl.gz exp/real/data/lan-lai_cuts_train.jsonl.gz \\
         [--peer-hf DIR] [--steps 4] [--warmup 1] [--max-duration 40] [--threads 2] \\
         [--ablate pad30 frozen ctc] [--set key=value ...] [--out bench/throughput.md]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import resource
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
for path in (BENCH, BENCH.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import peer_hf_whisper as peer  # noqa: E402
import train_profile  # noqa: E402

from speechalign.data.manifest import load_cuts  # noqa: E402
from speechalign.train.trainer import Trainer  # noqa: E402

log = logging.getLogger("bench.train_throughput")

# The state cache needs trimmed input and a frozen front end, so the rows that change either turn it off too.
ABLATIONS = {
    "pad30": ("speechalign, Whisper 30-s padding (length_mode pad30)", ["model.whisper.length_mode=pad30",
                                                                       "model.freeze.cache_states=false"]),
    "frozen": ("speechalign, nothing frozen", ["model.freeze.frontend=false", "model.freeze.first_layers=0",
                                               "model.freeze.decoder_embedding=false",
                                               "model.freeze.cache_states=false"]),
    "ctc": ("speechalign, no CTC loss (ctc_weight 0)", ["model.ctc_weight=0.0"]),
    # Issue 31: the cuts packed back to back into 30-s windows (recipes/real_whisper_base_hybrid_packed.yaml),
    # with PACKED_BATCH times the audio per batch (40 -> 100 s), so each of the ~4 windows is as full as first
    # fit makes it.
    "packed": ("speechalign, packed 30-s windows (data.pack, pad30)", [
        "model.whisper.length_mode=pad30", "model.freeze.cache_states=false", "data.num_buckets=1",
        "data.pack={window: 30, gap: 0.3, single_share: 0.1}"]),
    # The same, with windows of one variety: the sampler draws runs of one variety (VarietyRunSampler).
    "packed_variety": ("speechalign, packed 30-s windows of one variety (data.pack.group variety)", [
        "model.whisper.length_mode=pad30", "model.freeze.cache_states=false", "data.num_buckets=1",
        "data.pack={window: 30, gap: 0.3, single_share: 0.1, group: variety}"]),
    # Mandarin windows kept apart and held to frozen Whisper reading them, live
    # (recipes/real_whisper_base_hybrid_packed_window_teacher.yaml): the teacher's cost and that of the
    # windows the split leaves part-filled.
    "packed_window_teacher": ("speechalign, packed, Mandarin windows apart, window teacher on them", [
        "model.whisper.length_mode=pad30", "model.freeze.cache_states=false", "data.num_buckets=1",
        "data.pack={window: 30, gap: 0.3, single_share: 0.1, apart: [Mandarin]}",
        "model.guard={kind: window_teacher, weight: 1.0, varieties: [Mandarin]}"]),
    # Issue 46: the packed default plus the cross-dialect alignment term (not ASR-only), each kind: two varieties
    # of a sentence per batch (data.parallel), one sentence per window, InfoNCE at layer 5.
    "packed_align_pooled": ("speechalign, packed, + pooled alignment term (model.align)", [
        "model.whisper.length_mode=pad30", "model.freeze.cache_states=false", "data.num_buckets=1",
        "data.pack={window: 30, gap: 0.3, single_share: 0.1}", "data.parallel=2",
        "model.align={kind: pooled, layer: 5, weight: 1.0}"]),
    "packed_align_seqsim": ("speechalign, packed, + soft-SeqSim alignment term (model.align)", [
        "model.whisper.length_mode=pad30", "model.freeze.cache_states=false", "data.num_buckets=1",
        "data.pack={window: 30, gap: 0.3, single_share: 0.1}", "data.parallel=2",
        "model.align={kind: seqsim, layer: 5, weight: 1.0}"]),
}
PACKED_BATCH = 2.5


class PeakRss:
    """Highest resident set size seen while the context runs (a sampling thread; psutil if available)."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self.start = interval, 0, 0
        try:
            import psutil

            self._rss = psutil.Process().memory_info
        except ImportError:   # no sampling: the process's lifetime peak is all there is
            self._rss = None

    def _now(self) -> int:
        if self._rss is not None:
            return self._rss().rss
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def __enter__(self):
        self.start = self.peak = self._now()
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(self.interval):
                self.peak = max(self.peak, self._now())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())


@dataclass
class Row:
    name: str
    step_s: list[float]        # compute seconds per measured optimizer step
    audio_s: list[float]       # audio seconds per measured step
    utts: list[int]
    load_s: list[float]        # in-process loading per measured step (not in step_s)
    rss_start: int
    rss_peak: int
    note: str = ""

    @property
    def throughput(self) -> float:
        return sum(self.audio_s) / sum(self.step_s) if sum(self.step_s) > 0 else 0.0

    @property
    def throughput_with_loading(self) -> float:
        total = sum(self.step_s) + sum(self.load_s)
        return sum(self.audio_s) / total if total > 0 else 0.0


class RecordingLoader:
    """Wraps the trainer's loader and records the cut ids of every batch it yields, so the peer gets the
    very batches speechalign trained on."""

    def __init__(self, loader):
        self.loader, self.batches = loader, []

    def __iter__(self):
        for batch in self.loader:
            if len(batch.ids):
                self.batches.append(list(batch.ids))
            yield batch

    def __len__(self):
        return len(self.loader)


def speechalign_row(cfg, name: str, steps: int, warmup: int, threads: int, note: str = "") -> tuple[Row, list, int]:
    """Measure one configuration; also return the batches (cut ids) it drew and its accum_grad."""
    gc.collect()
    with PeakRss() as rss, tempfile.TemporaryDirectory(prefix="train_throughput-") as exp:
        trainer = Trainer(cfg, exp)
        torch.set_num_threads(threads)
        trainer.loader = recorder = RecordingLoader(trainer.loader)
        try:
            prof = train_profile.run_profile(trainer, steps, warmup)
        finally:
            if trainer.writer:
                trainer.writer.close()
        accum = trainer.cfg.optim.accum_grad
        del trainer
    row = Row(name, list(prof.step_s), list(prof.audio_s), list(prof.utts), list(prof.data_s), rss.start, rss.peak, note)
    return row, recorder.batches, accum


def peer_row(hf_dir: Path, cuts_by_id: dict, batches: list[list[str]], accum: int, steps: int, warmup: int,
             threads: int, out: Path) -> Row:
    """The peer's Seq2SeqTrainer on the given batches: warmup + steps optimizer steps of ``accum`` each."""
    from torch.utils.data import DataLoader

    gc.collect()
    need = (warmup + steps) * accum
    if len(batches) < need:
        raise ValueError(f"speechalign drew {len(batches)} batches, the peer needs {need}")
    batches = batches[:need]
    flat = [cuts_by_id[i] for b in batches for i in b]
    index, starts = [], 0
    for b in batches:
        index.append(list(range(starts, starts + len(b))))
        starts += len(b)
    with PeakRss() as rss:
        torch.manual_seed(0)
        model, processor = peer.load_peer(hf_dir)
        collator = peer.DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
        budget = peer.TimeBudget(0)
        args = peer.training_args(out, 1, accum, warmup + steps, max(1, round((warmup + steps) / 10)), 0, 0,
                                  10 ** 9, False)
        trainer = peer.make_trainer(model, processor, args, peer.PeerDataset(flat, processor), None, collator,
                                    [budget.callback])

        def fixed_batches():   # the same cut groups, in speechalign's order
            return DataLoader(trainer.train_dataset, batch_sampler=index, collate_fn=collator, num_workers=0)

        trainer.get_train_dataloader = fixed_batches
        budget.trainer = trainer
        torch.set_num_threads(threads)
        trainer.train()
        del trainer, model
    compute = budget.compute[warmup:]
    loading = [w - c for w, c in zip(budget.wall[warmup:], compute)]
    utts = [sum(len(b) for b in batches[(warmup + k) * accum : (warmup + k + 1) * accum]) for k in range(steps)]
    return Row("transformers peer (Seq2SeqTrainer, fine-tune Whisper guide)", compute, budget.audio[warmup:], utts,
               loading, rss.start, rss.peak, "whole model, 30-s log-mel windows, decoder loss only, AdamW 1e-5")


def render(rows: list[Row], cfg, argv: list[str], threads: int, steps: int) -> str:
    peer_rows = [r for r in rows if r.name.startswith("transformers peer")]
    ref = peer_rows[0].throughput if peer_rows else 0.0
    mb = 1024 * 1024
    lines = ["# Training throughput: speechalign against the transformers peer", "",
             f"Command: `python bench/train_throughput.py {' '.join(shlex.quote(a) for a in argv)}`", "",
             f"Machine: {os.cpu_count()} CPU cores ({train_profile._cpu_name()}), torch {torch.__version__}, "
             f"{threads} intra-op thread(s); {steps} measured optimizer step(s) per row after the warm-up; "
             f"batches of data.max_duration {cfg.data.max_duration} s (the same cut ids for every row), "
             f"optim.accum_grad {cfg.optim.accum_grad}. Load average (1 min) now: {os.getloadavg()[0]:.2f}.", "",
             "| system | audio-s per wall-s | with in-process loading | s/step | audio s/step | utterances/step | "
             "peak RSS MB (row start) | vs recipe | vs peer |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = train_profile.mean(r.step_s)
        vs = f"{r.throughput / ref:.2f}x" if ref > 0 else "-"
        lines.append(f"| {r.name} | {r.throughput:.2f} | {r.throughput_with_loading:.2f} | {s:.3f} | "
                     f"{train_profile.mean(r.audio_s):.1f} | {train_profile.mean(r.utts):.1f} | "
                     f"{r.rss_peak / mb:.0f} ({r.rss_start / mb:.0f}) | {r.throughput / rows[0].throughput:.2f}x | "
                     f"{vs} |")
    lines.append("")
    for r in rows:
        if r.note:
            lines.append(f"- {r.name}: {r.note}")
    lines.append(f"- process lifetime peak RSS (getrusage): "
                 f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if peer_rows and rows[0] is not peer_rows[0]:
        lines += ["", f"ratio (speechalign recipe / transformers peer, audio-s per wall-s): "
                      f"{rows[0].throughput / ref if ref > 0 else float('nan'):.2f}"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="speechalign recipe YAML (its Whisper is the peer's model too)")
    p.add_argument("--cuts", nargs="+", help="training manifests, one corpus each (replace data.train)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every speechalign row (repeatable)")
    p.add_argument("--peer-hf", type=Path, help="the peer's WhisperForConditionalGeneration dir "
                                                "(default: <model.whisper.pretrained>/hf)")
    p.add_argument("--steps", type=int, default=4, help="measured optimizer steps per row (default 4)")
    p.add_argument("--warmup", type=int, default=1, help="steps run first and not measured (default 1)")
    p.add_argument("--max-duration", type=float, help="data.max_duration: seconds of audio per batch (default: the recipe's)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--ablate", nargs="*", default=[], choices=sorted(ABLATIONS),
                   help="speechalign differences to turn off, one row each: pad30 frozen ctc; packed: the cuts "
                        "packed into 30-s windows (issue 31); packed_variety: windows of one variety; "
                        "packed_window_teacher: Mandarin windows apart, held by the window teacher")
    p.add_argument("--no-peer", action="store_true", help="speechalign rows only")
    p.add_argument("--out", help="write the markdown table here too")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Row]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    base = train_profile.profile_config(args.config, args.cuts, args.max_duration, args.threads, args.overrides)
    rows, batches, accum = [], None, base.optim.accum_grad
    configs = [("speechalign recipe", [], f"freeze {base.model.freeze.__dict__}, ctc_weight {base.model.ctc_weight}, "
                                         f"length_mode {base.model.whisper.length_mode}")]
    for a in args.ablate:
        extra = ABLATIONS[a][1] + ([f"data.max_duration={PACKED_BATCH * base.data.max_duration:g}"]
                                   if a.startswith("packed") else [])
        configs.append((ABLATIONS[a][0], extra, " ".join(extra)))
    for name, extra, note in configs:
        cfg = train_profile.profile_config(args.config, args.cuts, args.max_duration, args.threads,
                                           args.overrides + extra) if extra else base
        log.info("measuring: %s", name)
        row, drawn, accum_row = speechalign_row(cfg, name, args.steps, args.warmup, args.threads, note)
        rows.append(row)
        if batches is None:
            batches, accum = drawn, accum_row
    if not args.no_peer:
        hf_dir = args.peer_hf or Path(os.path.expanduser(base.model.whisper.pretrained or "")) / "hf"
        if not (hf_dir / "config.json").is_file():
            raise SystemExit(f"{hf_dir}: no transformers Whisper dir for the peer (fetch-pretrained writes <dir>/hf; "
                             "or speechalign export-whisper-hf --whisper-dir DIR), or give --peer-hf")
        paths = [c for corpus in base.data.train for c in corpus.cuts]
        cuts_by_id = {c.id: c for c in load_cuts(*paths)}
        log.info("measuring: transformers peer on the same %d batches", (args.warmup + args.steps) * accum)
        with tempfile.TemporaryDirectory(prefix="train_throughput-peer-") as out:
            rows.append(peer_row(hf_dir, cuts_by_id, batches, accum, args.steps, args.warmup, args.threads, Path(out)))
    text = render(rows, base, argv, args.threads, args.steps)
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
