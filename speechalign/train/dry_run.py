"""Dry runs of a recipe: nothing is downloaded and nothing big is built.

``dry_run`` builds the recipe's model (random init) and runs one forward/backward on a fake batch.
``miniature`` turns a recipe into a random-init miniature of the same architecture that trains one
step, so an ``egs/<corpus>/run.sh --dry-run`` exercises every stage on a fake corpus in seconds.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch

from speechalign.config import ExperimentConfig
from speechalign.data.dataset import Batch, collate_audio
from speechalign.data.packing import join_audio, spans
from speechalign.models import build_model
from speechalign.models.hf_encoder import tiny_config
from speechalign.train.objectives import add_terms, build_terms

log = logging.getLogger("speechalign.train")


def _without_pretrained_decoder(cfg: ExperimentConfig) -> None:
    """A dry run downloads nothing: a pretrained Whisper decoder becomes a 1-layer character decoder
    (same hybrid loss, CTC vocabulary instead of Whisper's BPE). What needs the BPE vocabulary falls back:
    translation targets to transcripts, the restricted softmax to the full one (both are tested on a
    tiny imported Whisper instead); the distillation guard's teacher is the decoder as it starts."""
    d = cfg.model.decoder
    if d.pretrained:
        d.pretrained = None
        d.num_layers = max(d.num_layers, 1)
        d.targets, d.train_vocab = "transcript", "full"


def miniature(cfg: ExperimentConfig) -> ExperimentConfig:
    """Same encoder type, front end, loss and data; tiny random-init sizes; one training step."""
    cfg = copy.deepcopy(cfg)
    m = cfg.model
    m.whisper.pretrained = m.wav2vec2.pretrained = m.hf.pretrained = None
    if m.encoder == "hf" and m.hf.model_type:
        m.hf.config = {**m.hf.config, **tiny_config(m.hf.model_type)}
    m.whisper.d_model, m.whisper.encoder_layers, m.whisper.encoder_attention_heads = 32, 2, 2
    m.whisper.encoder_ffn_dim = 64
    m.wav2vec2.hidden_size, m.wav2vec2.num_hidden_layers, m.wav2vec2.num_attention_heads = 32, 2, 2
    m.wav2vec2.intermediate_size = 64
    m.wav2vec2.conv_dim = [32] * len(m.wav2vec2.conv_dim)
    m.conformer.d_model, m.conformer.num_layers, m.conformer.num_heads, m.conformer.ffn_dim = 32, 2, 2, 64
    _without_pretrained_decoder(cfg)
    m.decoder.num_layers = min(m.decoder.num_layers, 1)
    m.decoder.num_heads, m.decoder.ffn_dim = 2, 64
    m.freeze.encoder_steps = 0
    m.freeze.first_layers = min(m.freeze.first_layers, 1)   # a layer of the 2-layer miniature trains (and adapts)
    cfg.data.max_duration = min(cfg.data.max_duration, 2.0)   # a fake corpus must still fill one batch
    cfg.data.num_workers = 0   # a one-step run on a fake corpus: starting workers would cost more than reading
    t = cfg.train
    t.max_steps, t.max_minutes, t.valid_every, t.save_every, t.log_every = 1, 0.0, 1, 1, 1
    t.bf16, t.keep_last = False, 1
    t.valid_retrieval_layers = sorted({min(k, 2) for k in t.valid_retrieval_layers})   # 2-layer miniature
    m.align.layer = min(m.align.layer, 2)
    cfg.optim.warmup_steps, cfg.optim.accum_grad = 1, 1
    return cfg


def dry_run(cfg: ExperimentConfig, vocab_size: int = 50) -> dict:
    """Returns the loss parts of one forward/backward of the full-size recipe model (random init). With
    ``data.pack`` the fake batch is one window of three utterances, joined as the loader joins them (a window is
    30 s whatever it holds, so one keeps the dry run of a full-size packed recipe cheap)."""
    cfg = copy.deepcopy(cfg)
    for sub in (cfg.model.whisper, cfg.model.wav2vec2, cfg.model.hf):
        sub.pretrained = None
    _without_pretrained_decoder(cfg)
    utts = [np.random.default_rng(i).standard_normal(16000 * 2 - 4000 * (i % 2)).astype(np.float32) * 0.1
            for i in range(3 if cfg.data.pack.window else 2)]
    targets = [[3 + i, 4 + i, 5][: 3 - i % 2] for i in range(len(utts))]
    # the first two are one sentence in two varieties, so that an alignment term (model.align) has a pair
    sentences, varieties = ["s0", "s0", "s1"][: len(utts)], ["A", "B", "A"][: len(utts)]
    where = [[(0.0, len(u) / 16000)] for u in utts]
    parts = [[s] for s in sentences], [[v] for v in varieties]
    if cfg.data.pack.window:
        where = [spans([len(u) / 16000 for u in utts], cfg.data.pack.gap)]
        parts = [sentences], [varieties]
        utts, targets = [join_audio(utts, cfg.data.pack.gap)], [sum(targets, [])]
    wav, lens = collate_audio(utts)
    # of the variety a guard reads, so that the dry run runs the guard too
    variety = (cfg.model.guard.varieties or ["A"])[0]
    batch = Batch(wav, lens, targets, [f"utt{i}" for i in range(len(utts))], [variety] * len(utts), [""] * len(utts),
                  part_spans=where, part_sentences=parts[0], part_dialects=parts[1])
    # the recipe's seed, as training uses it, for the random init and SpecAugment: the same losses every time
    with torch.random.fork_rng():
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg, vocab_size)
        model.encoder.enable_spec_augment(cfg.data.spec_augment)
        out = add_terms(model(wav, lens, targets, keep_attention=True), build_terms(cfg, model), batch)
        out["loss"].backward()
    parts = {k: float(v.detach()) for k, v in out.items()}
    log.info("dry run: %s encoder, %d layers, %.2fM parameters, losses %s", cfg.model.encoder,
             model.encoder.num_layers, sum(p.numel() for p in model.parameters()) / 1e6, parts)
    return parts
