"""The one trainer for every recipe: bucketing sampler, hybrid CTC/attention loss, AdamW with
warmup, accumulation, clipping, optional bf16, validation with per-dialect CER, exact resume, DDP.

Experiment directory: ``config.yaml``, ``tokens.txt``, ``encoder_config.json`` (transformers
encoders), ``checkpoints/step-N/``, ``tensorboard/``, ``train.log``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from speechalign.config import ExperimentConfig, save_config
from speechalign.data.dataset import (SpeechDataset, UsableForTraining, default_num_workers, eval_loader, make_loader,
                                      oversampled, train_cuts, train_sampler)
from speechalign.data.features import frontend_for
from speechalign.data.manifest import DuplicateIds, ManifestError, cut_meta, open_cuts, refuse_duplicates
from speechalign.data.packing import TargetBudget, WindowPacker
from speechalign.decode.cer import CerScorer
from speechalign.decode.ctc import ctc_greedy
from speechalign.models import ASRModel, build_model
from speechalign.models.experiment import ATT_TRAIN_VOCAB, read_ids, write_ids
from speechalign.retrieval.vectors import center_frames
from speechalign.retrieval.yubao import mean_off_diagonal, yubao_protocol
from speechalign.text import CharTokenizer
from speechalign.text.whisper_vocab import WhisperVocab
from speechalign.train.arithmetic import arithmetic
from speechalign.train.checkpoint import latest_valid, list_checkpoints, save_checkpoint
from speechalign.train.layer_lr import encoder_groups
from speechalign.train.objectives import add_terms, build_terms
from speechalign.train.rundir import ExperimentLock, claim, new_run_id
from speechalign.train.schedule import build_scheduler, ramp
from speechalign.train.state_cache import StateCache
from speechalign.train.stops import StopSignals, TrainingStopped

log = logging.getLogger("speechalign.train")
DECODER_JSON, WHISPER_TOKENIZER = "decoder.json", "whisper_tokenizer.json"


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def all_true(self, flag: bool) -> bool:
        """True when ``flag`` holds on every rank (one tiny all-reduce)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return bool(t.item())

    def gather(self, obj):
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out


def init_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend=backend)
    return Dist(torch.distributed.get_rank(), world)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: ExperimentConfig, exp_dir: str | Path, resume: bool = False, overwrite: bool = False):
        self.cfg = cfg
        self.exp_dir = Path(exp_dir)
        self.ckpt_root = self.exp_dir / "checkpoints"
        self.device = resolve_device(cfg.train.device)
        if cfg.train.num_threads > 0:
            torch.set_num_threads(cfg.train.num_threads)
        self.dist = init_distributed(self.device)
        seed_everything(cfg.train.seed + self.dist.rank)
        self.lock = self._claim(resume, overwrite)
        self.run_id, self.stops = new_run_id(), StopSignals()
        self.resume_from = latest_valid(self.ckpt_root) if resume else None
        if resume and self.resume_from is None:
            # Recipes always pass --resume: only checkpoints that failed to load make starting afresh news.
            (log.warning if list_checkpoints(self.ckpt_root) else log.info)(
                "--resume: no valid checkpoint under %s, starting from scratch", self.ckpt_root)
        self._setup_model()
        self._setup_data()
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=cfg.optim.lr,
                                           betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.max_steps)
        self.step, self.epoch, self.nan_run, self.nan_total = 0, 0, 0, 0
        self.consumed = 0                       # batches of this epoch taken from the loader
        self.bad = {"total": 0, "epoch": 0, "first": []}
        self.timing = {"data_wait": 0.0, "compute": 0.0, "audio": 0.0}   # seconds; audio: trained on (this rank)
        if self.resume_from is not None:
            self._restore()
        elif self.dist.main:
            save_config(cfg, self.exp_dir / "config.yaml")
        self.ddp_model = self.model
        if self.dist.enabled:
            unused = self.model.decoder is not None and cfg.model.ctc_weight >= 1.0
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=unused)
        self.writer, self.last_valid = None, {}
        if self.dist.main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.exp_dir / "tensorboard"))

    # ---------------------------------------------------------------- setup
    def _claim(self, resume: bool, overwrite: bool) -> ExperimentLock | None:
        """Rank 0 locks the experiment dir and checks the run may write there; every rank learns the verdict."""
        lock, error = None, None
        if self.dist.main:
            try:
                lock = claim(self.exp_dir, self.cfg, resume, overwrite)
            except (ValueError, RuntimeError, OSError) as e:
                error = e
        verdict = self.dist.gather(str(error) if error else None)[0]
        if error is not None:
            raise error
        if verdict is not None:
            raise RuntimeError(f"rank 0: {verdict}")
        return lock

    def _setup_model(self) -> None:
        cfg = self.cfg
        tokens = self.exp_dir / "tokens.txt"
        if tokens.is_file() and self.resume_from is not None:
            self.tokenizer = CharTokenizer.load(tokens)
        else:
            # One streaming pass over the manifests only (not a Shar corpus's audio tars).
            texts = (c.supervisions[0].text or "" for c in train_cuts(cfg.data.train, cfg.train.seed, True)
                     if c.supervisions)
            self.tokenizer = CharTokenizer.build(texts, min_count=cfg.data.min_char_count)
            if self.dist.main:
                self.exp_dir.mkdir(parents=True, exist_ok=True)
                self.tokenizer.save(tokens)
        hf_config = self.exp_dir / "encoder_config.json"
        resuming = self.resume_from is not None
        att_vocab = self._attention_vocab(resuming)
        decoder_json = self.exp_dir / DECODER_JSON if resuming and att_vocab is not None else None
        self.model: ASRModel = build_model(cfg, len(self.tokenizer), hf_config if resuming and hf_config.is_file() else None,
                                           decoder_json, att_vocab)
        if self.model.encoder.hf_config is not None and self.dist.main:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            self.model.encoder.hf_config.to_json_file(str(hf_config))
        bad = [k for k in cfg.train.valid_retrieval_layers if not 0 <= k <= self.model.encoder.num_layers]
        if bad:
            raise ValueError(f"train.valid_retrieval_layers: {bad} out of range; this encoder has layers "
                             f"0 (input embedding) to {self.model.encoder.num_layers}")
        f = cfg.model.freeze
        self.cache = StateCache(self.model.encoder, f.first_layers, cfg.data.spec_augment) if f.cache_states else None
        # With the cache, the log-mel features are seen only once per cut: the stored states are masked instead.
        self.model.encoder.enable_spec_augment(cfg.data.spec_augment and self.cache is None)
        self.model.to(self.device)
        self._apply_freeze()
        if cfg.model.decoder.train_vocab == "targets":
            vocab_file = self.exp_dir / ATT_TRAIN_VOCAB
            if self.resume_from is None and self.dist.main:
                write_ids(vocab_file, training_att_vocab(cfg, self.model))
            if self.dist.enabled:
                torch.distributed.barrier()
            self.model.set_train_vocab(read_ids(vocab_file))
        self.terms = build_terms(cfg, self.model)
        n = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log.info("model: %s encoder, %d layers, %.2fM parameters (%.2fM trained), vocabulary %d%s%s", cfg.model.encoder,
                 self.model.encoder.num_layers, n / 1e6, trainable / 1e6, len(self.tokenizer),
                 f", training softmax over {len(self.model.train_vocab)} of {self.model.att_vocab_size} tokens"
                 if self.model.train_vocab is not None else "",
                 "".join(f", + {t.name} (weight {t.weight})" for t in self.terms))

    def _attention_vocab(self, resuming: bool):
        """Whisper's BPE vocabulary when the attention branch is Whisper's decoder; its architecture and
        tokenizer are copied into the experiment dir, so decoding needs nothing else."""
        src = self.cfg.model.decoder.pretrained
        if not src:
            return None
        src = Path(os.path.expanduser(src))
        if not resuming and self.dist.main:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            for name, dst in (("decoder.json", DECODER_JSON), ("tokenizer.json", WHISPER_TOKENIZER)):
                if not (src / name).is_file():
                    raise FileNotFoundError(f"model.decoder.pretrained: {src / name} not found (speechalign "
                                            "fetch-pretrained whisper-base imports the decoder and its tokenizer)")
                shutil.copy(src / name, self.exp_dir / dst)
        if self.dist.enabled:
            torch.distributed.barrier()
        return WhisperVocab(self.exp_dir / WHISPER_TOKENIZER, self.cfg.model.decoder.language)

    def _param_groups(self) -> list[dict]:
        """Encoder, attention decoder and the rest (CTC head) with their own peak learning rates."""
        o = self.cfg.optim
        enc = list(self.model.encoder.parameters())
        dec = list(self.model.decoder.parameters()) if self.model.decoder is not None else []
        seen = {id(p) for p in enc + dec}
        rest = [p for p in self.model.parameters() if id(p) not in seen]
        enc_lr = o.encoder_lr if o.encoder_lr is not None else o.lr
        groups = [*encoder_groups(self.model.encoder, enc_lr, o.layer_lr_decay),
                  {"params": dec, "lr": o.decoder_lr if o.decoder_lr is not None else o.lr, "name": "decoder"},
                  {"params": rest, "lr": o.lr, "name": "head"}]
        return [g for g in groups if g["params"]]

    def _apply_freeze(self) -> None:
        f = self.cfg.model.freeze
        whole = getattr(self, "step", 0) < f.encoder_steps
        self.model.set_frozen(f.frontend, f.first_layers, whole, f.decoder_embedding)

    def _setup_data(self) -> None:
        cfg = self.cfg.data
        usable = UsableForTraining(cfg.min_utt_duration, cfg.max_utt_duration, self.model.encoder.frame_shift)
        kept = self._scan_training_data(usable)
        per_epoch = sum(n * cfg.oversample.get(variety, 1) for variety, n in kept.items())
        self.epoch_items = per_epoch * (1 + len(cfg.speed_perturb))
        # Lazy all the way: the manifests are read as the sampler's buffer needs them.
        cuts = oversampled(train_cuts(cfg.train, self.cfg.train.seed).filter(usable), cfg.oversample)
        for factor in cfg.speed_perturb:
            cuts = cuts + cuts.perturb_speed(factor)
        # lhotse asserts on more buckets than cuts; a tiny corpus simply gets fewer buckets.
        num_buckets = max(1, min(cfg.num_buckets, self.epoch_items))
        self.sampler = train_sampler(cuts, cfg.max_duration, num_buckets, cfg.shuffle, self.cfg.train.seed,
                                     self.dist.world_size, self.dist.rank, cfg.buffer_size,
                                     cfg.pack.group if cfg.pack.window else None, cfg.parallel)
        self.num_workers = cfg.num_workers if cfg.num_workers >= 0 else default_num_workers(self.device.type)
        # The front end whose stored output the loader reads, or None to decode audio on the fly.
        self.frontend = frontend_for(self.cfg) if cfg.features != "audio" else None
        self.precomputed = cfg.features == "precomputed"
        packer = WindowPacker.from_config(cfg.pack, self.cfg.train.seed, self._target_budget(),
                                          apart_sentences=cfg.parallel >= 2)
        dataset = SpeechDataset(self.tokenizer, self.model.encoder.min_samples, self.frontend, self.precomputed, packer)
        # A private generator: DataLoader otherwise draws from the global RNG at every iter(), which
        # would make a resumed run diverge from an uninterrupted one.
        self.loader = make_loader(dataset, self.sampler, self.num_workers, cfg.prefetch_factor,
                                  torch.Generator().manual_seed(self.cfg.train.seed))
        log.info("data: %d usable training cuts per epoch, %d loader worker(s), %s%s", self.epoch_items,
                 self.num_workers, {"audio": "front end in the model", "loader": "front end in the loader",
                                    "precomputed": "precomputed features"}[cfg.features],
                 f", packed into {cfg.pack.window:g}-s windows ({cfg.pack.group}, {cfg.pack.gap:g}-s gaps, "
                 f"{cfg.pack.single_share:.0%} single"
                 f"{f', {cfg.pack.timestamp_share:.0%} with timestamps' if cfg.pack.timestamp_share else ''})"
                 if packer else "")
        self.dev_cuts = open_cuts(*cfg.dev) if cfg.dev else None

    def _target_budget(self) -> TargetBudget | None:
        """How many target tokens a packed window may hold: what the attention decoder has positions for,
        less its prefix (a variety prompt: at most 32 tokens) and the end token."""
        m = self.model
        if m.decoder is None or m.ctc_weight >= 1.0:
            return None
        reserve = len(m.att_prefix) + 1 + (32 if m.prompt == "variety" else 0)
        return TargetBudget(m.decoder.max_len - reserve, m.att_vocab, 2 if self.cfg.data.pack.timestamp_share else 0)

    def _scan_training_data(self, usable: UsableForTraining) -> dict[str, int]:
        """One streaming pass over the training manifests (metadata only): counts the usable cuts per variety
        and why others are left out, and rejects duplicate cut ids, in memory that does not hold the cuts."""
        reasons: dict[str, int] = {}
        kept: dict[str, int] = {}
        dups, total = DuplicateIds(), 0
        for cut in tqdm(train_cuts(self.cfg.data.train, self.cfg.train.seed, True), desc="scan training data",
                        unit="cut", disable=not self.dist.main, mininterval=5):
            total += 1
            dups.add(cut.id)
            why = usable.reason(cut)
            if why is None:
                variety = cut_meta(cut)["dialect"]
                kept[variety] = kept.get(variety, 0) + 1
            else:
                reasons[why] = reasons.get(why, 0) + 1
        repeated = dups.find(train_cuts(self.cfg.data.train, self.cfg.train.seed, True))
        if repeated:
            if not any(c.shar for c in self.cfg.data.train):   # manifests: name the file and position of both
                refuse_duplicates([p for c in self.cfg.data.train for p in c.cuts], dups)
            raise ManifestError(f"data.train: duplicate cut id(s) {repeated} (ids must be unique across corpora)")
        if reasons:
            log.warning("train: filtered %d of %d cuts: %s", total - sum(kept.values()), total,
                        ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1])))
        if not kept:
            raise ValueError(f"train: no usable cuts left after filtering ({reasons})")
        absent = sorted(set(self.cfg.data.oversample) - set(kept))
        if absent:
            raise ValueError(f"data.oversample: no usable training cut of {absent} (varieties: {sorted(kept)})")
        return kept

    def _restore(self) -> None:
        step_dir, weights, state = self.resume_from
        self.model.load_state_dict(weights, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.nan_total = state.get("nan_total", 0)
        self.run_id = state.get("run_id")   # None: a run from before run ids, whose checkpoints have none
        self.bad = state.get("bad", self.bad)
        self.timing.update(state.get("timing", {}))   # a resumed run reports its whole training time
        per_rank = state["per_rank"]
        if len(per_rank) != self.dist.world_size:
            raise ValueError(f"{step_dir}: saved with {len(per_rank)} processes, resuming with {self.dist.world_size}")
        self.sampler.load_state_dict(per_rank[self.dist.rank]["sampler"])
        self.consumed = per_rank[self.dist.rank].get("consumed", 0)
        set_rng_state(per_rank[self.dist.rank]["rng"])
        self._apply_freeze()
        log.info("resumed from %s (step %d, epoch %d)", step_dir, self.step, self.epoch)

    # ---------------------------------------------------------------- loop
    def train(self) -> Path | None:
        """The loop, with SIGTERM/SIGINT turned into a checkpoint and a stop; the lock goes at the end."""
        try:
            with self.stops:
                return self._train()
        finally:
            if self.writer:
                self.writer.close()
            if self.lock is not None:
                self.lock.release()

    def _train(self) -> Path | None:
        cfg = self.cfg.train
        start = time.monotonic()
        budget = cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not self.dist.main, desc="train", unit="step")
        last_saved, saved_step = None, -1
        restored = self.resume_from is not None
        out_of_time = False
        if cfg.valid_at_start and self.step == 0:
            self._validate()
        while self.step < cfg.max_steps and self.epoch < cfg.max_epochs and not out_of_time:
            if not restored:
                self.sampler.set_epoch(self.epoch)
                self.consumed, self.bad["epoch"] = 0, 0
            resumed_mid_epoch, restored = restored, False
            batches = iter(self.loader)
            micro, acc = 0, {}
            while True:
                waited = time.perf_counter()
                batch = next(batches, None)
                self.timing["data_wait"] += time.perf_counter() - waited
                if not self.dist.all_true(batch is not None):
                    break
                self.consumed += 1
                self._count_bad(batch)
                if not self.dist.all_true(len(batch.ids) > 0):
                    continue    # every item of some rank's batch was unreadable
                if micro % self.cfg.optim.accum_grad == 0:
                    acc = {"finite": True, "audio": 0.0}
                computed = time.perf_counter()
                self._micro_step(batch.to(self.device), acc)
                self.timing["compute"] += time.perf_counter() - computed
                self.timing["audio"] += batch.seconds
                micro += 1
                if micro % self.cfg.optim.accum_grad or not self._optimizer_step(acc):
                    continue
                bar.update(1)
                bar.set_postfix(loss=f"{acc['loss']:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                if self.step % cfg.valid_every == 0:
                    self._validate()
                # Every rank must take the same branch, or the collectives below would pair up wrongly.
                out_of_time = not self.dist.all_true(time.monotonic() - start <= budget)
                if self.step % cfg.save_every == 0 or self.step >= cfg.max_steps or out_of_time:
                    last_saved, saved_step = self._save(acc, out_of_time), self.step
                if not self.dist.all_true(self.stops.received is None):
                    self._stop_on_signal(acc, saved_step)
                if self.step >= cfg.max_steps or out_of_time:
                    break
            if batch is None and micro == 0 and not resumed_mid_epoch:
                raise ValueError(f"epoch {self.epoch} produced no batches: the training data is smaller than one batch "
                                 f"(data.max_duration={self.cfg.data.max_duration} s; incomplete batches are dropped); "
                                 "lower data.max_duration")
            if batch is None:
                self.epoch += 1
                if cfg.valid_each_epoch and self.last_valid.get("valid_step") != self.step:
                    self._validate()
        bar.close()
        if out_of_time:
            log.info("time budget of %.1f min reached at step %d", cfg.max_minutes, self.step)
        if saved_step != self.step:
            last_saved = self._save({}, out_of_time)
        if self.nan_total:
            log.warning("skipped %d batches with a non-finite loss", self.nan_total)
        if self.bad["total"]:
            log.warning("dropped %d unreadable training item(s); first: %s", self.bad["total"],
                        "; ".join(self.bad["first"][:5]))
        log.info("%s", self._timing_line())
        if self.cache is not None:
            log.info("cached encoder states: %d utterances, %.0f MB; %d of %d batch items read from the cache",
                     len(self.cache.states), self.cache.megabytes(), self.cache.hits,
                     self.cache.hits + self.cache.misses)
        if self.dist.enabled:
            self._check_ranks_in_sync()
        if self.writer:
            self.writer.close()
        return last_saved

    def _stop_on_signal(self, stats: dict, saved_step: int) -> None:
        """Checkpoint the step just taken (unless that is done) and stop with the signal's exit code."""
        if saved_step != self.step:
            self._save(stats)
        path = self.ckpt_root / f"step-{self.step}"
        name = self.stops.name or "a signal on another rank"
        log.info("%s: checkpoint at step %d written to %s", name, self.step, path)
        raise TrainingStopped(f"training stopped by {name} at step {self.step}; continue from {path} with --resume",
                              self.stops.received or signal.SIGTERM)

    def _count_bad(self, batch) -> None:
        """Unreadable items were left out of the batch by the loader: log, count, and stop only when an
        epoch holds more of them than data.max_bad_fraction allows."""
        if not batch.bad:
            return
        self.bad["total"] += len(batch.bad)
        self.bad["epoch"] += len(batch.bad)
        for item in batch.bad:
            if len(self.bad["first"]) < 20:
                self.bad["first"].append(item.line())
                log.warning("dropped unreadable training item: %s", item.line())
        if self.writer:
            self.writer.add_scalar("train/bad_items", self.bad["total"], self.step)
        limit = self.cfg.data.max_bad_fraction * self.epoch_items / self.dist.world_size
        if self.bad["epoch"] > limit:
            raise RuntimeError(
                f"training stopped: {self.bad['epoch']} unreadable items in epoch {self.epoch}, more than "
                f"data.max_bad_fraction={self.cfg.data.max_bad_fraction} of {self.epoch_items}; first: "
                + "; ".join(self.bad["first"][:3]))

    def _timing_line(self) -> str:
        wait, compute = self.timing["data_wait"], self.timing["compute"]
        share = wait / max(wait + compute, 1e-9)
        return (f"step time: data wait {wait:.1f} s ({share:.1%}), compute {compute:.1f} s "
                f"with {self.num_workers} loader worker(s)")

    def _check_ranks_in_sync(self) -> None:
        """Every rank must end with the same weights; a mismatch means DDP silently diverged."""
        checksum = float(sum(p.detach().double().sum() for p in self.model.parameters()))
        sums = self.dist.gather(checksum)
        if len(set(sums)) != 1:
            raise RuntimeError(f"DDP ranks diverged: parameter checksums {sums}")
        log.info("weights in sync across %d processes (checksum %.6f)", self.dist.world_size, checksum)

    def _micro_step(self, batch, acc: dict) -> None:
        """Forward and backward of one batch; loss parts are kept in ``acc`` for logging."""
        self.ddp_model.train()
        r = self.cfg.model.ctc_encoder_grad_ramp
        self.model.ctc_encoder_grad = ramp(self.step, self.cfg.model.ctc_encoder_grad, r.to, r.start, r.end)
        wav, lens, start = batch.wav, batch.wav_lens, None
        if self.cache is not None:
            wav, lens = self.cache.batch(batch.ids, wav, lens)
            start = self.cfg.model.freeze.first_layers
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.train.bf16):
            out = add_terms(self.ddp_model(wav, lens, batch.targets, batch.parts or batch.texts, batch.translations,
                                           start_layer=start, keep_attention=bool(self.terms),
                                           dialects=batch.dialects, spans=batch.spans or None), self.terms, batch)
        loss = out["loss"]
        finite = self.dist.all_true(bool(torch.isfinite(loss)))
        if finite:
            (loss / self.cfg.optim.accum_grad).backward()
        acc["finite"] = acc["finite"] and finite
        acc["audio"] += batch.seconds
        acc.update({k: float(v.detach()) for k, v in out.items()})

    def _optimizer_step(self, stats: dict) -> bool:
        """Clip, step and schedule; a non-finite loss skips the update (counted, abort after K in a row)."""
        if not stats["finite"]:
            self.optimizer.zero_grad(set_to_none=True)
            self.nan_run += 1
            self.nan_total += 1
            log.warning("non-finite loss at step %d: batch skipped (%d in a row)", self.step, self.nan_run)
            if self.nan_run >= self.cfg.train.nan_patience:
                raise RuntimeError(f"training aborted: {self.nan_run} non-finite losses in a row at step {self.step}; "
                                   "lower optim.lr, check the data, or disable train.bf16")
            return False
        self.nan_run = 0
        params = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip) if params else torch.tensor(0.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.step == self.cfg.model.freeze.encoder_steps:
            self._apply_freeze()
        if self.writer and self.step % self.cfg.train.log_every == 0:
            for k in ("loss", "ctc", "att", "att_acc", *(t.name for t in self.terms)):
                if k in stats:
                    self.writer.add_scalar(f"train/{k}", stats[k], self.step)
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                self.writer.add_scalar(f"train/lr/{group.get('name', 'all')}", lr, self.step)
            self.writer.add_scalar("train/grad_norm", float(grad_norm), self.step)
            self.writer.add_scalar("train/ctc_encoder_grad", self.model.ctc_encoder_grad, self.step)
            wait, compute = self.timing["data_wait"], self.timing["compute"]
            self.writer.add_scalar("train/data_wait_fraction", wait / max(wait + compute, 1e-9), self.step)
        stats["grad_norm"] = float(grad_norm)
        return True

    @torch.no_grad()
    def _validate(self) -> dict:
        if self.dev_cuts is None or not self.dist.main:
            return {}
        self.model.eval()
        layers = self.cfg.train.valid_retrieval_layers
        scorer, total_loss, utts = CerScorer(), 0.0, 0
        frames, frame_ids = {k: [] for k in layers}, []
        for batch in eval_loader(self.dev_cuts, self.cfg.data.valid_max_duration, self.tokenizer,
                                 min_samples=self.model.encoder.min_samples, frontend=self.frontend,
                                 precomputed=self.precomputed):
            if batch.bad:
                raise ValueError(f"dev data: {batch.bad[0].line()}")
            batch.to(self.device)
            enc = self.model.encode(batch.wav, batch.wav_lens)
            for hyp, ref, dialect in zip(ctc_greedy(self.model.ctc_log_probs(enc), enc.lengths),
                                         batch.texts, batch.dialects):
                scorer.add(ref, self.tokenizer.decode(hyp), dialect)
            for k in layers:
                frames[k] += [h[:n].float().cpu().numpy() for h, n in zip(enc.hidden_states[k], enc.speech_lengths.tolist())]
            frame_ids += batch.ids
            if all(batch.targets):
                total_loss += float(self.model.loss(enc, batch.targets, batch.texts, batch.translations,
                                                    dialects=batch.dialects)["loss"]) * len(batch.ids)
                utts += len(batch.ids)
        self.model.train()
        metrics = {"valid_step": self.step, "valid_loss": total_loss / max(utts, 1),
                   "valid_cer": {d: round(c.cer, 4) for d, c in scorer.rows()}}
        if layers:
            r1 = dev_retrieval_r1(self.dev_cuts, frame_ids, frames, self.cfg.train.valid_retrieval_center)
            metrics["valid_r1"] = {k: round(v, 2) for k, v in r1.items()}
            metrics["valid_r1_best"] = round(max(r1.values()), 2)
        self.last_valid = metrics
        if self.writer:
            self.writer.add_scalar("valid/loss", metrics["valid_loss"], self.step)
            for d, cer in metrics["valid_cer"].items():
                self.writer.add_scalar(f"valid/cer/{d}", cer, self.step)
            for k, v in metrics.get("valid_r1", {}).items():
                self.writer.add_scalar(f"valid/yubao_r1/layer{k}", v, self.step)
        log.info("step %d: valid loss %.3f, greedy CER %s%s", self.step, metrics["valid_loss"],
                 ", ".join(f"{d} {c:.3f}" for d, c in metrics["valid_cer"].items()),
                 "".join(f"; YuBao R@1 layer {k} {v:.1f}%" for k, v in metrics.get("valid_r1", {}).items()))
        return metrics

    def _sampler_state(self) -> dict:
        """The sampler's state as of the batches the loop consumed. Workers prefetch, so the sampler
        itself is ahead; lhotse restores by replaying the epoch's batch count, which must be ours."""
        state = self.sampler.state_dict()
        epoch_stats = state["diagnostics"]["stats_per_epoch"].get(state["diagnostics"]["current_epoch"])
        if epoch_stats is not None:
            epoch_stats["kept_batches"], epoch_stats["discarded_batches"] = self.consumed, 0
        return state

    def _save(self, stats: dict, out_of_time: bool = False) -> Path | None:
        per_rank = self.dist.gather({"sampler": self._sampler_state(), "rng": rng_state(),
                                     "consumed": self.consumed})
        if not self.dist.main:
            return None
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "step": self.step, "epoch": self.epoch, "nan_total": self.nan_total, "per_rank": per_rank,
                 "bad": self.bad, "timing": dict(self.timing), **({"run_id": self.run_id} if self.run_id else {})}
        log.info("step %d: %s", self.step, self._timing_line())
        # A time cap makes results depend on the machine's speed: the report says so.
        stopped = {"stopped_by": "max_minutes", "max_minutes": self.cfg.train.max_minutes} if out_of_time else {}
        metrics = {"step": self.step, "max_steps": self.cfg.train.max_steps, **stopped, "epoch": self.epoch,
                   **({"run_id": self.run_id} if self.run_id else {}),
                   **{f"train_{k}": round(v, 5) for k, v in stats.items() if isinstance(v, float)},
                   "train_data_wait_s": round(self.timing["data_wait"], 3),
                   "train_compute_s": round(self.timing["compute"], 3),
                   "train_audio_s": round(self.timing["audio"], 1),
                   "train_bad_items": self.bad["total"], **({"train_bad_first": self.bad["first"][:5]} if self.bad["total"] else {}),
                   "arithmetic": arithmetic(self.device),
                   **(self.last_valid if self.last_valid.get("valid_step") == self.step else {})}
        return save_checkpoint(self.ckpt_root, self.step, self.model, state, metrics, self.cfg.train.keep_last)


def dev_retrieval_r1(dev_cuts, ids: list[str], frames: dict[int, list[np.ndarray]], center: bool) -> dict[int, float]:
    """Mean off-diagonal YuBao-protocol SeqSim R@1 (%) of the dev cuts at each layer, so forgetting of
    cross-variety alignment shows while a run is going. Cuts need custom site, subgroup, sentence_id."""
    meta = {}
    for cut in dev_cuts:
        custom = cut.supervisions[0].custom or {} if cut.supervisions else {}
        if not all(custom.get(k) for k in ("site", "subgroup", "sentence_id")):
            raise ValueError(f"train.valid_retrieval_layers: dev cut {cut.id} lacks custom site/subgroup/sentence_id")
        meta[cut.id] = (custom["site"], custom["subgroup"], str(custom["sentence_id"]))
    sites, groups, sids = (np.array([meta[i][j] for i in ids]) for j in range(3))
    out = {}
    for layer, fr in frames.items():
        result = yubao_protocol(sites, groups, sids, frames=center_frames(fr, sites) if center else fr,
                                mode="seqsim", workers=1)
        out[layer] = mean_off_diagonal(result.table)
    return out


def training_att_vocab(cfg: ExperimentConfig, model: ASRModel) -> list[int]:
    """Every BPE token of the attention targets of the training cuts, plus the end token (and Whisper's
    timestamp tokens when packed windows carry them)."""
    ids = {model.att_eos}
    translation = cfg.model.decoder.targets == "translation"
    for cut in train_cuts(cfg.data.train, cfg.train.seed, True):
        meta = cut_meta(cut)
        text = meta["translation"] if translation else meta["text"]
        if text:
            ids.update(model.att_vocab.encode(text))
    if cfg.data.pack.timestamp_share:
        ids.update(model.att_vocab.timestamp_ids())
    return sorted(ids)


def train(cfg: ExperimentConfig, exp_dir: str | Path, resume: bool = False, overwrite: bool = False) -> Path | None:
    return Trainer(cfg, exp_dir, resume, overwrite).train()
