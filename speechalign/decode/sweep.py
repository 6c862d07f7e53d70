"""``speechalign decode-sweep``: pick LM weight, word score and CTC weight on a dev manifest.

The encoder runs once per batch; every grid point re-decodes the cached encodings, so a sweep costs
the search only. Writes ``<exp>/decode/<checkpoint>/sweep-<set>-<mode>.{tsv,md}`` (one row per grid
point, per-dialect and overall CER) and returns the rows, best first.
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import torch

from speechalign.data.dataset import eval_loader
from speechalign.decode.cer import CerScorer
from speechalign.decode.lm import CharLM, LMOptions
from speechalign.atomic import write_text
from speechalign.data.manifest import open_cuts
from speechalign.decode.batch import decode_encoded, hyp_text, make_ctc_search
from speechalign.models.experiment import load_experiment
from speechalign.tables import markdown, tsv

log = logging.getLogger("speechalign.decode")


@torch.no_grad()
def decode_sweep(exp_dir: str | Path, cuts: str | Path, mode: str, lm_path: str | Path | None = None,
                 lm_weights: list[float] = (0.0,), word_scores: list[float] = (0.0,),
                 ctc_weights: list[float] = (0.5,), beam: int = 10, checkpoint: str = "latest",
                 max_utts: int | None = None, max_duration: float = 120.0) -> list[dict]:
    exp_dir, cuts = Path(exp_dir), Path(cuts)
    if lm_path is None and (any(w for w in lm_weights) or any(s for s in word_scores)):
        raise ValueError("decode-sweep: --lm-weights/--word-scores other than 0 need --lm")
    _, tokenizer, model = load_experiment(exp_dir, checkpoint)
    cutset = open_cuts(cuts)
    if max_utts:
        cutset = cutset.subset(first=max_utts)
    batches = []
    for batch in eval_loader(cutset, max_duration, min_samples=model.encoder.min_samples):
        if batch.bad:
            raise ValueError(f"decode-sweep: {batch.bad[0].line()}")
        enc = model.encode(batch.wav, batch.wav_lens)
        batches.append((batch, enc, model.ctc_log_probs(enc)))
    set_name = cuts.name.split(".")[0].replace("_cuts_", "_")
    char_lm = CharLM(lm_path, tokenizer.tokens) if lm_path is not None else None
    rows = []
    for lm_w, ws, cw in itertools.product(lm_weights, word_scores, ctc_weights):
        lm = LMOptions(Path(lm_path), lm_w, ws) if lm_path is not None and (lm_w or ws) else None
        ctc_search = make_ctc_search(tokenizer, mode, beam, lm)
        joint_lm = (char_lm, lm) if lm is not None and mode == "joint_beam" else None
        scorer, start = CerScorer(), time.perf_counter()
        for batch, enc, log_probs in batches:
            hyps = decode_encoded(model, enc, log_probs, mode, beam, cw, tokenizer.decode, ctc_search, joint_lm,
                                  tokenizer.encode, batch.dialects)
            for dialect, ref, h in zip(batch.dialects, batch.texts, hyps):
                scorer.add(ref, hyp_text(model, tokenizer, mode, h), dialect)
        row = {"lm_weight": lm_w, "word_score": ws, "ctc_weight": cw, "seconds": time.perf_counter() - start}
        row.update({d: 100 * c.cer for d, c in scorer.rows()})
        rows.append(row)
        log.info("sweep %s %s: lm_weight %g word_score %g ctc_weight %g -> CER %.2f%%", set_name, mode, lm_w, ws,
                 cw, row["overall"])
    rows.sort(key=lambda r: r["overall"])
    write_sweep(exp_dir / "decode" / checkpoint / f"sweep-{set_name}-{mode}", rows, set_name, mode, beam, lm_path)
    return rows


def write_sweep(stem: Path, rows: list[dict], set_name: str, mode: str, beam: int, lm_path) -> Path:
    keys = ["lm_weight", "word_score", "ctc_weight"]
    dialects = [k for k in rows[0] if k not in keys + ["seconds", "overall"]] + ["overall"]
    header = keys + [f"CER% {d}" for d in dialects] + ["seconds"]
    body = [[f"{r[k]:g}" for k in keys] + [f"{r[d]:.2f}" for d in dialects] + [f"{r['seconds']:.1f}"] for r in rows]
    write_text(stem.with_suffix(".tsv"), tsv(header, body))
    md = (f"Decode sweep, set `{set_name}`, mode `{mode}`, beam {beam}, LM `{lm_path or 'none'}`; best first.\n\n"
          + markdown(header, body))
    write_text(stem.with_suffix(".md"), md)
    log.info("sweep table: %s", stem.with_suffix(".md"))
    return stem.with_suffix(".md")
