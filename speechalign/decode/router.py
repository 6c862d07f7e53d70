"""Variety routing: a linear classifier on the encoder's mean-pooled states sends each utterance to the
checkpoint that reads its variety best.

Fine-tuning Whisper on ten varieties costs it Mandarin (goo-gi test: 8.3 % CER before, 18.3 % after), and no
training lever tried kept it (egs/goo-gi/RESULTS.md, issue 31). The pretrained weights still read Mandarin, and
Mandarin is easy to tell from Min and Hakka in the fine-tuned encoder's states. So ``train-router`` fits a
logistic regression (scikit-learn) on the training cuts' pooled states, labelled by where their variety goes
(``--route Mandarin=wise-decoder+encoder-0``; every other variety stays on the main checkpoint), and
``decode --router`` decodes each utterance with the checkpoint its prediction names. Embeddings and retrieval
are the main checkpoint's: routing changes transcripts only.

The classifier is stored as safetensors (weights, with the standardization folded in) and string metadata:
nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from speechalign.atomic import save_weights
from speechalign.data.dataset import eval_loader
from speechalign.data.manifest import open_cuts
from speechalign.models.encoders import pool
from speechalign.models.fetch import sha256_of

log = logging.getLogger("speechalign.decode")

MAIN = "main"   # the route of every variety without its own: the checkpoint the router reads


@dataclass
class VarietyRouter:
    """``predict`` maps (B, D) pooled states of layer ``layer`` of ``checkpoint`` to route names: ``main`` or a
    checkpoint of the same experiment."""

    checkpoint: str
    layer: int
    checkpoint_sha256: str              # of the weights the router was fitted on: a re-averaged checkpoint needs a refit
    routes: dict[str, str]              # variety -> checkpoint
    classes: list[str]                  # route names, in the order of the weight rows (binary: one row)
    weight: np.ndarray                  # (C, D), or (1, D) for two classes: classes[1] when the score is > 0
    bias: np.ndarray                    # (C,) or (1,)
    fit: dict = field(default_factory=dict)   # how it was fitted and what it routed (a report, not a parameter)

    def scores(self, pooled: np.ndarray) -> np.ndarray:
        return pooled.astype(np.float64) @ self.weight.T + self.bias

    def predict(self, pooled: np.ndarray) -> list[str]:
        s = self.scores(pooled)
        if len(self.classes) == 2:
            return [self.classes[int(v > 0)] for v in s[:, 0]]
        return [self.classes[i] for i in s.argmax(1)]

    def route(self, enc) -> list[str]:
        """The route of each utterance of an encoded batch (the checkpoint's :class:`EncoderOutput`)."""
        return self.predict(pooled(enc, self.layer))

    def targets(self) -> list[str]:
        """The checkpoints the routes name (not the main one)."""
        return sorted({c for c in self.classes if c != MAIN})

    def save(self, path: str | Path) -> Path:
        meta = {"checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256, "layer": str(self.layer),
                "routes": json.dumps(self.routes),
                "classes": json.dumps(self.classes), "fit": json.dumps(self.fit, ensure_ascii=False)}
        return save_weights(path, {"weight": torch.from_numpy(self.weight), "bias": torch.from_numpy(self.bias)},
                            meta)

    @classmethod
    def load(cls, path: str | Path) -> "VarietyRouter":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "np") as f:
                meta = f.metadata() or {}
                weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path}: not a router file written by train-router ({e})") from None
        missing = [k for k in ("checkpoint", "checkpoint_sha256", "layer", "routes", "classes") if k not in meta]
        if missing:
            raise ValueError(f"{path}: router metadata lacks {missing}; was it written by train-router?")
        return cls(meta["checkpoint"], int(meta["layer"]), meta["checkpoint_sha256"], json.loads(meta["routes"]),
                   json.loads(meta["classes"]), weight, bias, json.loads(meta.get("fit", "{}")))

    def check_weights(self, weights: Path, path: str | Path) -> None:
        """The checkpoint's weights file must be the one the router was fitted on."""
        if sha256_of(weights) != self.checkpoint_sha256:
            raise ValueError(f"--router {path}: checkpoint {self.checkpoint!r} ({weights}) changed since the router was "
                             "fitted on its states (re-averaged?); fit it again with speechalign train-router")


def parse_routes(specs: list[str]) -> dict[str, str]:
    """``["Mandarin=wise-decoder+encoder-0"]`` -> {variety: checkpoint}."""
    routes = {}
    for spec in specs:
        variety, sep, target = spec.partition("=")
        if not sep or not variety.strip() or not target.strip():
            raise ValueError(f"--route {spec!r}: expected VARIETY=CHECKPOINT, e.g. Mandarin=wise-decoder+encoder-0")
        if variety.strip() in routes:
            raise ValueError(f"--route: variety {variety.strip()!r} is routed twice")
        routes[variety.strip()] = target.strip()
    if not routes:
        raise ValueError("--route: name at least one VARIETY=CHECKPOINT")
    return routes


def pooled(enc, layer: int) -> np.ndarray:
    """(B, D) means of one encoder state over each utterance's speech frames: what the router reads."""
    return pool(enc.hidden_states[layer].float(), enc.speech_lengths, "mean").cpu().numpy()


@torch.no_grad()
def pooled_states(model, cuts_path: str | Path, layer: int, max_duration: float, device: str = "cpu",
                  desc: str = "router states") -> tuple[np.ndarray, list[str]]:
    """Mean-pooled states of ``layer`` over each readable cut's speech frames, and the cuts' varieties."""
    vecs, varieties = [], []
    loader = eval_loader(open_cuts(cuts_path), max_duration, min_samples=model.encoder.min_samples)
    for batch in tqdm(loader, desc=desc, unit="batch"):
        for item in batch.bad:
            log.warning("train-router: skipped %s", item.line())
        if not batch.ids:
            continue
        enc = model.encode(batch.wav.to(device), batch.wav_lens.to(device))
        vecs.append(pooled(enc, layer))
        varieties += batch.dialects
    if not vecs:
        raise ValueError(f"train-router: no readable cut in {cuts_path}")
    return np.concatenate(vecs), varieties


def route_labels(varieties: list[str], routes: dict[str, str]) -> list[str]:
    return [routes.get(v, MAIN) for v in varieties]


def routed_shares(predicted: list[str], varieties: list[str]) -> dict[str, dict[str, int]]:
    """variety -> {route: utterances}: what a router did, per true variety."""
    table: dict[str, Counter] = {}
    for v, p in zip(varieties, predicted):
        table.setdefault(v, Counter())[p] += 1
    return {v: dict(sorted(c.items())) for v, c in sorted(table.items())}


def fit_linear(x: np.ndarray, labels: list[str], seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A class-balanced logistic regression on standardized features, folded into one affine map on raw ones."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"train-router: the training cuts hold one route only ({classes}); a route's variety "
                         "must occur in them, and so must another")
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(max_iter=5000, class_weight="balanced", random_state=seed)
    clf.fit(scaler.transform(x), labels)
    weight = clf.coef_ / scaler.scale_
    bias = clf.intercept_ - weight @ scaler.mean_
    return [str(c) for c in clf.classes_], weight, bias


def train_router(exp_dir: str | Path, cuts: list[str | Path], routes: dict[str, str], checkpoint: str = "latest",
                 layer: int = -1, dev: list[str | Path] = (), out: str | Path | None = None,
                 max_duration: float = 120.0, device: str = "cpu") -> tuple[VarietyRouter, Path]:
    """Fit the router of ``checkpoint`` on ``cuts`` and write it (default ``<exp>/router-<checkpoint>.safetensors``);
    ``dev`` cuts are routed and reported per variety, never fitted."""
    from speechalign.models.experiment import load_experiment, resolve_weights

    exp_dir = Path(exp_dir)
    for target in routes.values():
        resolve_weights(exp_dir, target)   # a missing route target fails now, not at decode time
    _, _, model = load_experiment(exp_dir, checkpoint, device)
    n_states = model.encoder.num_layers + 1   # the input embedding, then each layer
    if not -n_states <= layer < n_states:
        raise ValueError(f"train-router: --layer {layer} outside the encoder's states 0..{n_states - 1}")
    layer %= n_states
    xs, varieties = [], []
    for path in cuts:
        x, v = pooled_states(model, path, layer, max_duration, device, f"router states {Path(path).name}")
        xs.append(x)
        varieties += v
    unknown = sorted(set(routes) - set(varieties))
    if unknown:
        raise ValueError(f"train-router: routed variety(s) {unknown} not in the training cuts; they hold "
                         f"{sorted(set(varieties))}")
    x, labels = np.concatenate(xs), route_labels(varieties, routes)
    classes, weight, bias = fit_linear(x, labels)
    router = VarietyRouter(checkpoint, layer, sha256_of(resolve_weights(exp_dir, checkpoint)), routes, classes, weight,
                           bias)
    train_pred = router.predict(x)
    router.fit = {"train": [str(p) for p in cuts], "train_accuracy": _accuracy(train_pred, labels),
                  "train_counts": dict(sorted(Counter(labels).items()))}
    for path in dev:
        x, v = pooled_states(model, path, layer, max_duration, device, f"router dev {Path(path).name}")
        pred = router.predict(x)
        router.fit.setdefault("dev", {})[Path(path).name] = {
            "accuracy": _accuracy(pred, route_labels(v, routes)), "routed": routed_shares(pred, v)}
    out = Path(out) if out else exp_dir / f"router-{checkpoint}.safetensors"
    router.save(out)
    log.info("train-router: %s layer %d, %s; train accuracy %.4f over %d cuts%s -> %s", checkpoint, layer,
             ", ".join(f"{k} -> {v}" for k, v in routes.items()), router.fit["train_accuracy"], len(labels),
             "".join(f"; {k} accuracy {d['accuracy']:.4f}" for k, d in router.fit.get("dev", {}).items()), out)
    return router, out


def _accuracy(pred: list[str], labels: list[str]) -> float:
    return float(np.mean([p == t for p, t in zip(pred, labels)])) if labels else float("nan")
