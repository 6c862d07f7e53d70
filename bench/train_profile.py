"""Where one training step's time goes, per module: forward, backward and optimizer, on CPU.

Builds a real ``Trainer`` from a recipe (its model, freezing, optimizer groups, sampler and loader) in a
temporary experiment dir and drives the trainer's own ``_micro_step`` / ``_optimizer_step`` on batches from
its loader, so whatever those do (loss terms, caches, adapters) is what gets timed. Hooks on the model's
top-level parts time each one:

* forward: forward pre/post hooks;
* backward: from the full backward pre hook (gradient of the module's output ready) to the later of the
  full backward hook (gradients of its inputs ready) and the accumulation of its parameters' gradients,
  because a trained module whose inputs need no gradient (the first trained layer above frozen ones) has
  its backward hook called at once, before its weight gradients are computed. A frozen module whose inputs
  need no gradient has no backward at all: it shows 0, which is the point of freezing the bottom layers;
* "rest" rows are a group's time minus its listed parts: the encoder's SpecAugment, masks and final norm;
  the decoder's final norm and output projection (a linear on the tied embedding, not a module); and the
  loss and glue (log-softmax, CTC loss, cross-entropy, targets) of the whole model;
* optimizer: gradient clipping, ``optimizer.step()`` (AdamW), ``zero_grad`` and the rest of
  ``_optimizer_step`` (scheduler, logging).

The step time is compute only (micro-steps + optimizer step); the loader runs in-process
(data.num_workers=0) and its time is reported apart, since in training its workers overlap compute.
Warm-up steps are excluded. The last line, ``steps/min X, s/step Y, audio-s per wall-s Z``, compares runs.

Usage: python bench/train_profile.py --config recipes/real_whisper_base_hybrid.yaml \
         --cuts exp/real/data/goo-gi_cuts_train.jsonl.gz exp/real/data/lan-lai_cuts_train.jsonl.gz \
         [--set key=value ...] [--steps 6] [--warmup 2] [--max-duration 40] [--threads 2] [--out bench/profile-X.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from speechalign.config import load_config
from speechalign.train.trainer import Trainer

log = logging.getLogger("bench.train_profile")
clock = time.perf_counter


class Clock:
    """Forward time and backward window of one module (or group) within one micro-step."""

    def __init__(self, name: str, label: str, module: nn.Module, group: bool = False):
        self.name, self.label, self.module, self.group = name, label, module, group
        self.calls = 0          # forward calls over the whole run
        self.reset()

    def reset(self) -> None:
        self.own_fwd, self.own_calls = 0.0, 0
        self._fwd_start: list[float] = []
        self.span: list[float] = []       # forward starts and ends of its children (see ModuleTimer.span_children)
        self.bwd_start: float | None = None
        self.bwd_end: float | None = None

    @property
    def fwd(self) -> float:
        if self.own_calls or not self.span:
            return self.own_fwd
        return max(self.span) - min(self.span)

    def bwd_mark(self, start: bool) -> None:
        now = clock()
        if start:
            self.bwd_start = now if self.bwd_start is None else min(self.bwd_start, now)
        else:
            self.bwd_end = now if self.bwd_end is None else max(self.bwd_end, now)

    @property
    def bwd(self) -> float:
        if self.bwd_start is None or self.bwd_end is None:
            return 0.0
        return max(0.0, self.bwd_end - self.bwd_start)


def _tensors(obj) -> list[torch.Tensor]:
    """Tensors in a module output: a tensor, a tuple/list of them, a dataclass (EncoderOutput) or dict."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    if hasattr(obj, "__dataclass_fields__"):
        return [t for k in obj.__dataclass_fields__ for t in _tensors(getattr(obj, k))]
    return []


class ModuleTimer:
    """Hooks on the model's parts (see the module docstring), one ``Clock`` each, in table order."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = {id(m): n for n, m in model.named_modules()}
        self.clocks: list[Clock] = []
        self.handles = []
        self.accum_hooked: set[int] = set()
        self.param_clocks: dict[int, list[Clock]] = {}
        enc = model.encoder
        self.encoder = self._add("encoder", "encoder", enc, group=True)
        frontend = getattr(enc, "frontend", None)
        if isinstance(frontend, nn.Module):
            self._add(self._name(frontend), f"encoder front end: {type(frontend).__name__}", frontend)
        for m in enc.frontend_modules():
            self._add(self._name(m), f"encoder front end: {self._name(m).rsplit('.', 1)[-1]}", m)
        self.layers = [self._add(self._name(m), f"encoder layer {i}", m) for i, m in enumerate(enc.layer_modules())]
        self.ctc = self._add("ctc", "CTC head (linear)", model.ctc)
        self.decoder = None
        dec = getattr(model, "decoder", None)
        if dec is not None:
            self.decoder = self._add("decoder", "decoder", dec, group=True)
            if isinstance(getattr(dec, "embed", None), nn.Module):
                self._add(self._name(dec.embed), "decoder embedding", dec.embed)
            stack = dec.layers.layers if isinstance(dec.layers, nn.TransformerDecoder) else dec.layers
            for i, m in enumerate(stack):
                self._add(self._name(m), f"decoder layer {i}", m)
        self.whole = self._add("", "model", model, group=True)
        self.hook_params()

    def _name(self, m: nn.Module) -> str:
        return self.names[id(m)]

    def _add(self, name: str, label: str, module: nn.Module, group: bool = False) -> Clock:
        c = Clock(name, label, module, group)
        self.clocks.append(c)

        def pre(_m, _args):
            c._fwd_start.append(clock())

        def post(_m, _args, out):
            c.own_fwd += clock() - c._fwd_start.pop()
            c.own_calls += 1
            c.calls += 1
            if not full:   # output not a tensor/tuple (EncoderOutput): mark when its gradients arrive
                for t in _tensors(out):
                    if t.requires_grad:
                        t.register_hook(lambda g: c.bwd_mark(True))

        self.handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        # Full backward hooks need a tensor (or tuple) output; the encoder's is an EncoderOutput.
        full = module is not self.model and module is not self.model.encoder
        if full:
            self.handles += [module.register_full_backward_pre_hook(lambda _m, _go: c.bwd_mark(True)),
                             module.register_full_backward_hook(lambda _m, _gi, _go: c.bwd_mark(False))]
        for p in module.parameters():
            self.param_clocks.setdefault(id(p), []).append(c)
        return c

    def span_children(self) -> None:
        """A part whose forward is never called as a module (torchaudio's conformer layers run through
        ``_masked_conformer_layer``) is timed by its direct children instead: from the first child's start to
        the last child's end, forward and backward. Called after each step; a part found in the first step
        (a warm-up step unless --warmup 0) is timed so from the next on."""
        for c in self.clocks:
            if c.group or c.calls or getattr(c, "spanned", False):
                continue
            c.spanned = True
            for child in c.module.children():
                def pre(_m, _a, c=c):
                    c.span.append(clock())

                def post(_m, _a, _o, c=c):
                    c.span.append(clock())

                self.handles += [child.register_forward_pre_hook(pre), child.register_forward_hook(post),
                                 child.register_full_backward_pre_hook(lambda _m, _go, c=c: c.bwd_mark(True)),
                                 child.register_full_backward_hook(lambda _m, _gi, _go, c=c: c.bwd_mark(False))]
                c.calls_by_children = True

    def hook_params(self) -> None:
        """The end of each module's backward includes its weight-gradient accumulation (trainable params;
        called before every micro-step, since freezing may change during training)."""
        for p in self.model.parameters():
            if p.requires_grad and id(p) not in self.accum_hooked:
                def accumulated(_p, owners=tuple(self.param_clocks.get(id(p), ()))) -> None:
                    for c in owners:
                        c.bwd_mark(False)

                self.handles.append(p.register_post_accumulate_grad_hook(accumulated))
                self.accum_hooked.add(id(p))

    def reset(self) -> None:
        for c in self.clocks:
            c.reset()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


@dataclass
class Row:
    label: str
    params: int = 0
    trainable: int = 0
    fwd: list[float] = field(default_factory=list)   # seconds per measured step
    bwd: list[float] = field(default_factory=list)
    kind: str = "module"                             # module, rest, optimizer
    frozen: bool | None = None                       # all parameters frozen (None: no parameters)
    called: bool = True


def _count(params) -> tuple[int, int]:
    params = list({id(p): p for p in params}.values())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


class Profile:
    """Per-step measurements collected into table rows."""

    def __init__(self, timer: ModuleTimer):
        self.timer = timer
        self.cache_fill_ms_per_utt: float | None = None
        t, model = timer, timer.model
        self.rows: dict[str, Row] = {}
        leaf = [c for c in t.clocks if not c.group]
        enc_parts = [c for c in leaf if c.name.startswith("encoder.")]
        dec_parts = [c for c in leaf if c.name.startswith("decoder.")]

        def own(*clocks):
            return [p for c in clocks for p in c.module.parameters()]

        def rest_params(group: nn.Module, parts):
            listed = {id(p) for p in own(*parts)}
            return [p for p in group.parameters() if id(p) not in listed]

        for c in enc_parts:
            self._row(c.label, own(c))
        self._row("encoder: rest (SpecAugment, masks, final norm)", rest_params(model.encoder, enc_parts), "rest")
        self._row(t.ctc.label, own(t.ctc))
        if t.decoder is not None:
            for c in dec_parts:
                self._row(c.label, own(c))
            self._row("decoder: rest (final norm, output projection on the tied embedding)",
                      rest_params(model.decoder, dec_parts), "rest")
        top = [model.encoder, model.ctc] + ([model.decoder] if t.decoder is not None else [])
        listed = {id(p) for m in top for p in m.parameters()}
        self._row("loss & glue (log-softmax, CTC loss, cross-entropy, targets)",
                  [p for p in model.parameters() if id(p) not in listed], "rest")
        for label in ("clip_grad_norm_", "optimizer.step() (AdamW)", "zero_grad", "scheduler + bookkeeping"):
            self._row(label, [], "optimizer")
        self.enc_parts, self.dec_parts = enc_parts, dec_parts
        self.step_s: list[float] = []
        self.micro_s: list[float] = []
        self.data_s: list[float] = []
        self.audio_s: list[float] = []
        self.utts: list[int] = []
        self.longest_s: list[float] = []
        self.skipped = 0
        self._pending: dict[str, list[float]] = {}
        self._micro_wall = 0.0
        self.load = (0.0, 0.0)       # 1-min load average at the start and the end

    def _row(self, label: str, params, kind: str = "module") -> None:
        self.rows[label] = Row(label, *_count(params), kind=kind)

    # ---- per micro-step / per step accumulation
    def add_micro(self, wall: float) -> None:
        t = self.timer
        add = self._pending

        def put(label, f, b):
            s = add.setdefault(label, [0.0, 0.0])
            s[0] += f
            s[1] += b

        model_fwd = t.whole.fwd
        for c in self.enc_parts + self.dec_parts:
            put(c.label, c.fwd, c.bwd)
        put("encoder: rest (SpecAugment, masks, final norm)", t.encoder.fwd - sum(c.fwd for c in self.enc_parts),
            t.encoder.bwd - sum(c.bwd for c in self.enc_parts))
        put(t.ctc.label, t.ctc.fwd, t.ctc.bwd)
        tops = [t.encoder, t.ctc]
        if t.decoder is not None:
            put("decoder: rest (final norm, output projection on the tied embedding)",
                t.decoder.fwd - sum(c.fwd for c in self.dec_parts), t.decoder.bwd - sum(c.bwd for c in self.dec_parts))
            tops.append(t.decoder)
        # backward of the whole micro-step = its wall time minus the model's forward
        put("loss & glue (log-softmax, CTC loss, cross-entropy, targets)", model_fwd - sum(c.fwd for c in tops),
            (wall - model_fwd) - sum(c.bwd for c in tops))
        self._micro_wall += wall

    def add_step(self, opt: dict[str, float], data: float, audio: float, utts: int, longest: float,
                 measured: bool) -> None:
        pending, self._pending = self._pending, {}
        micro, self._micro_wall = self._micro_wall, 0.0
        if not measured:
            return
        for label, (f, b) in pending.items():
            self.rows[label].fwd.append(f)
            self.rows[label].bwd.append(b)
        for label, sec in opt.items():
            self.rows[label].fwd.append(0.0)
            self.rows[label].bwd.append(sec)
        self.step_s.append(micro + sum(opt.values()))
        self.micro_s.append(micro)
        self.data_s.append(data)
        self.audio_s.append(audio)
        self.utts.append(utts)
        self.longest_s.append(longest)

    def finish(self) -> None:
        """Frozen / trained marks (the state at the end) and modules never called as modules."""
        for c in self.enc_parts + self.dec_parts:
            row = self.rows[c.label]
            row.called = c.calls > 0 or getattr(c, "calls_by_children", False)
            if row.params:
                row.frozen = row.trainable == 0


def ms(x: float) -> str:
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def mean(xs) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _patch_optimizer(trainer: Trainer, opt_times: dict[str, float]):
    """Time clip_grad_norm_, optimizer.step() and zero_grad inside the trainer's _optimizer_step."""
    marks = {}
    orig_clip = torch.nn.utils.clip_grad_norm_
    orig_zero = trainer.optimizer.zero_grad

    def clip(*a, **k):
        t0 = clock()
        try:
            return orig_clip(*a, **k)
        finally:
            opt_times["clip_grad_norm_"] += clock() - t0

    def zero(*a, **k):
        t0 = clock()
        try:
            return orig_zero(*a, **k)
        finally:
            opt_times["zero_grad"] += clock() - t0

    def step_pre(_opt, _a, _k):
        marks["step"] = clock()

    def step_post(_opt, _a, _k):
        opt_times["optimizer.step() (AdamW)"] += clock() - marks.pop("step")

    torch.nn.utils.clip_grad_norm_ = clip
    trainer.optimizer.zero_grad = zero
    handles = [trainer.optimizer.register_step_pre_hook(step_pre), trainer.optimizer.register_step_post_hook(step_post)]

    def undo():
        torch.nn.utils.clip_grad_norm_ = orig_clip
        del trainer.optimizer.zero_grad
        for h in handles:
            h.remove()
    return undo


def run_profile(trainer: Trainer, steps: int, warmup: int) -> Profile:
    timer = ModuleTimer(trainer.model)
    prof = Profile(timer)
    opt_times = dict.fromkeys(("clip_grad_norm_", "optimizer.step() (AdamW)", "zero_grad"), 0.0)
    undo = _patch_optimizer(trainer, opt_times)
    state = {"batches": None, "empty_epochs": 0}

    def next_batch():
        """The next non-empty batch, as Trainer.train() takes them (epochs roll over)."""
        while True:
            if state["batches"] is None:
                trainer.sampler.set_epoch(trainer.epoch)
                state["batches"] = iter(trainer.loader)
            batch = next(state["batches"], None)
            if batch is None:
                state["batches"] = None
                trainer.epoch += 1
                state["empty_epochs"] += 1
                if state["empty_epochs"] > 1:
                    raise ValueError("the training data yields no batch; lower --max-duration")
                continue
            state["empty_epochs"] = 0
            trainer.consumed += 1
            trainer._count_bad(batch)
            if len(batch.ids):
                return batch

    accum = trainer.cfg.optim.accum_grad
    # The batches are drawn first: with cached encoder states (model.freeze.cache_states) they are filled
    # here, timed apart, and the steps measure the steady state of every epoch after the first.
    drawn = []
    for _ in range((warmup + steps) * accum):
        t0 = clock()
        drawn.append((next_batch(), clock() - t0))
    if trainer.cache is not None:
        t0 = clock()
        for batch, _ in drawn:
            trainer.cache.batch(batch.ids, batch.wav, batch.wav_lens)
        utts = sum(len(b.ids) for b, _ in drawn)
        prof.cache_fill_ms_per_utt = 1e3 * (clock() - t0) / max(utts, 1)
    pending = iter(drawn)
    warnings_ctx = warnings.catch_warnings()
    warnings_ctx.__enter__()
    # Expected for trained modules whose inputs need no gradient; their weight-gradient accumulation ends the window.
    warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with "
                                              "respect to module outputs")
    try:
        for i in range(warmup + steps):
            measured = i >= warmup
            acc = {"finite": True, "audio": 0.0}
            data = audio = longest = 0.0
            utts = 0
            for _ in range(accum):
                batch, seconds = next(pending)
                data += seconds
                audio += batch.seconds
                utts += len(batch.ids)
                longest = max(longest, float(batch.wav_lens.max()) / (16000 if batch.wav.dim() == 2 else 100))
                timer.hook_params()
                timer.reset()
                t0 = clock()
                trainer._micro_step(batch.to(trainer.device), acc)
                prof.add_micro(clock() - t0)
            for k in opt_times:
                opt_times[k] = 0.0
            micro = prof._micro_wall
            t0 = clock()
            ok = trainer._optimizer_step(acc)
            total = clock() - t0
            if not ok:
                prof.skipped += measured
            parts = dict(opt_times)
            parts["scheduler + bookkeeping"] = total - sum(parts.values())
            prof.add_step(parts, data, audio, utts, longest, measured)
            timer.span_children()
            log.info("step %d%s: %.0f ms compute, %.1f s audio in %d utterances, loss %.3f", i + 1,
                     " (warm-up)" if not measured else "", 1e3 * (micro + total),
                     audio, utts, acc.get("loss", float("nan")))
    finally:
        warnings_ctx.__exit__(None, None, None)
        undo()
        timer.remove()
    prof.finish()
    return prof


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def summary_line(prof: Profile) -> str:
    s = mean(prof.step_s)
    return (f"steps/min {60 / s:.2f}, s/step {s:.3f}, audio-s per wall-s {mean(prof.audio_s) / s:.2f}"
            if s > 0 else "steps/min 0, s/step 0, audio-s per wall-s 0")


def render(prof: Profile, cfg, argv: list[str], threads: int) -> str:
    step_ms = 1e3 * mean(prof.step_s)
    lines = ["# Training step profile", "",
             f"Command: `python bench/train_profile.py {' '.join(shlex.quote(a) for a in argv)}`", "",
             f"Machine: {os.cpu_count()} CPU cores ({_cpu_name()}), torch {torch.__version__}, "
             f"{threads} intra-op thread(s), device {cfg.train.device}; {len(prof.step_s)} measured step(s) "
             f"after the warm-up. Encoder {cfg.model.encoder}, ctc_weight {cfg.model.ctc_weight}, freeze "
             f"{dataclasses.asdict(cfg.model.freeze)}, data.max_duration {cfg.data.max_duration} s, optim.accum_grad "
             f"{cfg.optim.accum_grad}, bf16 {cfg.train.bf16}.", "",
             f"Load average (1 min): {prof.load[0]:.2f} at the start, {prof.load[1]:.2f} at the end"
             + (" — other processes were using the CPU, which inflates every row." if prof.load[0] > 1.0 else "."),
             "",
             "Mean per measured step. Backward: from the gradient of a module's output to the gradients of its "
             "inputs and weights; 0 = no backward ran (frozen, nothing below it trains). Rest rows: the group's time "
             "minus its listed parts.", "",
             "| module | params (M) | trainable (M) | forward ms | backward ms | share of step % |",
             "|---|---:|---:|---:|---:|---:|"]
    tot_p = tot_t = 0
    for row in prof.rows.values():
        f, b = 1e3 * mean(row.fwd), 1e3 * mean(row.bwd)
        label = row.label
        if row.frozen is not None:
            label += " — frozen" if row.frozen else (" — trained" if row.trainable == row.params else " — partly trained")
        if not row.called:
            label += " (not called as a module)"
        tot_p += row.params
        tot_t += row.trainable
        params = f"{row.params / 1e6:.2f}" if row.kind != "optimizer" else ""
        trainable = f"{row.trainable / 1e6:.2f}" if row.kind != "optimizer" else ""
        fwd = ms(f) if row.kind != "optimizer" else ""
        share = 100 * (f + b) / step_ms if step_ms > 0 else 0.0
        lines.append(f"| {label} | {params} | {trainable} | {fwd} | {ms(b)} | {share:.1f} |")
    fwd_total = sum(1e3 * mean(r.fwd) for r in prof.rows.values())
    bwd_total = sum(1e3 * mean(r.bwd) for r in prof.rows.values() if r.kind != "optimizer")
    opt_total = sum(1e3 * mean(r.bwd) for r in prof.rows.values() if r.kind == "optimizer")
    lines.append(f"| **total** | {tot_p / 1e6:.2f} | {tot_t / 1e6:.2f} | {ms(fwd_total)} | "
                 f"{ms(bwd_total)} (+ {ms(opt_total)} optimizer) | 100.0 |")
    s = step_ms / 1e3
    ordered = sorted(prof.step_s)
    median = (ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2
    lines += ["", f"- step (compute: forward + backward + optimizer): **{step_ms:.0f} ms** mean, "
                  f"{1e3 * median:.0f} ms median; {60 / s if s else 0:.2f} steps/min",
              f"- audio per batch: {mean(prof.audio_s):.1f} s in {mean(prof.utts):.1f} utterances "
              f"(longest {mean(prof.longest_s):.1f} s); {mean(prof.audio_s) / s if s else 0:.2f} audio-s per wall-s",
              f"- loader, in-process (num_workers={cfg.data.num_workers}): {1e3 * mean(prof.data_s):.0f} ms per step, "
              "not in the step time (loader workers overlap it in training)"]
    if prof.cache_fill_ms_per_utt is not None:
        lines.append(f"- cached encoder states: filled before the measured steps, {prof.cache_fill_ms_per_utt:.0f} ms "
                     "per utterance, once per utterance per run (the steps above are every later epoch's)")
    if prof.skipped:
        lines.append(f"- {prof.skipped} measured step(s) had a non-finite loss: the update was skipped")
    lines += ["", "Per measured step:", "", "| step | audio s | utterances | ms |", "|---:|---:|---:|---:|"]
    for i, (a, u, t) in enumerate(zip(prof.audio_s, prof.utts, prof.step_s), 1):
        lines.append(f"| {i} | {a:.1f} | {u} | {1e3 * t:.0f} |")
    lines += ["", summary_line(prof), ""]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="recipe YAML")
    p.add_argument("--cuts", nargs="+", help="training manifests, one corpus each (replace data.train)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, as speechalign train --set (repeatable; applied last)")
    p.add_argument("--steps", type=int, default=6, help="measured steps")
    p.add_argument("--warmup", type=int, default=2, help="steps run first and not measured")
    p.add_argument("--max-duration", type=float, help="data.max_duration (seconds of audio per batch)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--out", help="write the markdown table here too")
    return p.parse_args(argv)


def profile_config(config, cuts=None, max_duration: float | None = None, threads: int = 2, overrides=()):
    """The recipe as profiled: in-process loading on CPU, no validation; ``cuts`` replace data.train (one
    corpus each), ``max_duration`` data.max_duration; ``overrides`` (``key=value``) are applied last."""
    fixed = ["data.num_workers=0", "train.device=cpu", f"train.num_threads={threads}",
             "data.dev=[]", "data.test=[]", "train.valid_at_start=false"]
    if cuts:
        fixed.append("data.train=[" + ", ".join(f"{{cuts: [{c}]}}" for c in cuts) + "]")
    if max_duration is not None:
        fixed.append(f"data.max_duration={max_duration}")
    return load_config(config, fixed + list(overrides))


def main(argv: list[str] | None = None) -> Profile:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
    cfg = profile_config(args.config, args.cuts, args.max_duration, args.threads, args.overrides)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="train_profile-") as exp:
        trainer = Trainer(cfg, exp)
        torch.set_num_threads(args.threads)
        try:
            prof = run_profile(trainer, args.steps, args.warmup)
        finally:
            if trainer.writer:
                trainer.writer.close()
    prof.load = (load_start, os.getloadavg()[0])
    text = render(prof, cfg, argv, args.threads)
    print(text, end="")   # its last line is the one-line summary
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return prof


if __name__ == "__main__":
    main()
