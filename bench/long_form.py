"""Long-form transcription against per-utterance decoding, on long recordings whose text and boundaries are known.

Recordings of 1, 5 and 30 minutes are made by joining utterances of a manifest (goo-gi test) in a seeded order,
with seeded gaps of 0.3-2 s of silence. Each is transcribed long-form (Silero VAD, segments packed into 30-s
windows and split back by CTC alignment, ``decode/longform.py``) with each engine, and compared with the same
utterances decoded one by one (each in its own 30-s window). Two ways back from a window's text to segments are
measured (``--splits``): ``ctc`` packs consecutive segments into 30-s windows and splits each window's text by CTC
alignment; ``segment`` reads one segment per window. For each:

* CER of the whole recording's text against the joined references, long-form and per utterance (what must stay
  equal: the references, and so the character count);
* boundary error: for each true utterance start (end), the distance to the nearest segment start (end); median;
* RTF (wall time of the transcription / audio seconds, model loaded) and peak RSS of the process.

Every (length, engine) runs in a child process of its own, so its peak RSS is its own; the parent prints one
table and the ratios. Per-utterance hypotheses are the experiment's decode report of the manifest (decoded first if missing).

    python bench/long_form.py --exp-dir exp/goo-gi/whisper_base_hybrid_packed_enc --checkpoint avg-last3 \\
        --cuts exp/goo-gi/data/goo-gi_cuts_test.jsonl.gz --out exp/bench-long-form
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LENGTHS = (1, 5, 30)
ENGINES = ("torch", "ct2")
SPLITS = ("ctc", "segment")


def build_recording(cuts_path: str, minutes: float, seed: int = 0):
    """(audio, [(id, start, end, text)]) of ``minutes`` of utterances joined with seeded 0.3-2 s gaps, written
    into one array allocated once (a list of parts and their concatenation would double the bench's RSS)."""
    from speechalign.data.manifest import cut_meta, load_cuts

    cuts = list(load_cuts(cuts_path))
    rng = np.random.default_rng(seed)
    plan, t, total = [], 0.0, minutes * 60
    while t < total:
        for i in rng.permutation(len(cuts)):
            gap = float(rng.uniform(0.3, 2.0))
            plan.append((cuts[i], round((t + gap) * 16000)))
            t += gap + cuts[i].duration
            if t >= total:
                break
    audio = np.zeros(plan[-1][1] + round(plan[-1][0].duration * 16000) + 16000 * 2, np.float32)
    rows = []
    for cut, at in plan:
        x = cut.load_audio()[0]
        audio[at : at + len(x)] = x
        rows.append((cut.id, at / 16000, (at + len(x)) / 16000, cut_meta(cut)["text"]))
    return audio, rows


def boundary_errors(rows, segments) -> list[float]:
    starts = np.array([s["start"] for s in segments])
    ends = np.array([s["end"] for s in segments])
    out = []
    for _, start, end, _ in rows:
        out += [float(np.abs(starts - start).min()), float(np.abs(ends - end).min())]
    return out


def cer(ref: str, hyp: str) -> float:
    import jiwer

    from speechalign.text.normalize import normalize

    return 100 * jiwer.cer(normalize(ref), normalize(hyp))


def per_utterance(args, engine: str) -> dict[str, str]:
    """Each utterance of the manifest decoded alone (its own 30-s window): the experiment's decode report of
    the manifest with this engine, decoded now if it has none."""
    from speechalign.decode.report import read_recogs
    from speechalign.decode.run import decode

    name = Path(args.cuts).name.split(".")[0].replace("_cuts_", "_")
    label = "attention_beam" + ("+ct2" if engine == "ct2" else "")
    path = Path(args.exp_dir) / "decode" / args.checkpoint / f"recogs-{name}-{label}.txt"
    if not path.is_file() or f"beam={args.beam}," not in path.read_text(encoding="utf-8").splitlines()[0]:
        decode(args.exp_dir, [args.cuts], mode="attention_beam", beam=args.beam, checkpoint=args.checkpoint,
               engine=engine)
    return {u.id: u.hyp for u in read_recogs(path).utts}


def child(args) -> None:
    """One (length, engine): transcribe the recording long-form; print a JSON line of its measurements."""
    import torch

    from speechalign.decode.engines import make_engine
    from speechalign.decode.longform import LongForm
    from speechalign.decode.run import pack_gap
    from speechalign.models.experiment import load_experiment

    audio, rows = build_recording(args.cuts, args.minutes)
    built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # the bench's own recording, decoded MP3s
    cfg, tokenizer, model = load_experiment(args.exp_dir, args.checkpoint)
    engine = make_engine(args.engine, Path(args.exp_dir), args.checkpoint, model, tokenizer, "attention_beam",
                         args.beam)
    longform = LongForm(engine, model, tokenizer, gap=pack_gap(cfg), pack=args.split == "ctc")
    start = time.perf_counter()
    with torch.inference_mode():
        segments = longform(audio, f"{args.minutes:g}-min", progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"segments": [s.__dict__ for s in segments], "rows": rows, "seconds": seconds,
                      "audio": len(audio) / 16000,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_built_mb": built},
                     ensure_ascii=False))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--checkpoint", default="avg-last3")
    p.add_argument("--cuts", required=True, help="utterances to join (goo-gi test)")
    p.add_argument("--out", type=Path, required=True, help="where the table and the per-utterance cache go")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--lengths", type=float, nargs="+", default=list(LENGTHS), help="minutes (default 1 5 30)")
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS,
                   help="ctc: segments packed into 30-s windows, split back by CTC alignment; segment: one segment "
                        "per window (default: both)")
    p.add_argument("--split", help=argparse.SUPPRESS)
    p.add_argument("--minutes", type=float, help=argparse.SUPPRESS)   # a child's run
    p.add_argument("--engine", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.minutes is not None:
        return child(args)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["| engine | window text to segments | minutes | utterances | segments | long-form CER % | per-utterance CER % | difference | "
             "median boundary error s | RTF | peak RSS MB | of it, the recording built |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rss = {}
    for engine in args.engines:
        alone = per_utterance(args, engine)
        for split in args.splits:
            for minutes in args.lengths:
                run = subprocess.run([sys.executable, __file__, "--exp-dir", args.exp_dir, "--checkpoint",
                                      args.checkpoint, "--cuts", args.cuts, "--out", str(args.out), "--beam",
                                      str(args.beam), "--minutes", str(minutes), "--engine", engine, "--split", split],
                                     capture_output=True, text=True, check=True)
                r = json.loads(run.stdout.strip().splitlines()[-1])
                ref = "".join(row[3] for row in r["rows"])
                long_cer = cer(ref, "".join(s["text"] for s in r["segments"]))
                utt_cer = cer(ref, "".join(alone[row[0]] for row in r["rows"]))
                errors = boundary_errors(r["rows"], r["segments"])
                rss[(engine, split, minutes)] = r["rss_mb"]
                lines.append(f"| {engine} | {split} | {minutes:g} | {len(r['rows'])} | {len(r['segments'])} | "
                             f"{long_cer:.2f} | {utt_cer:.2f} | {long_cer - utt_cer:+.2f} | {np.median(errors):.3f} | "
                             f"{r['seconds'] / r['audio']:.4f} | {r['rss_mb']:.0f} | {r['rss_built_mb']:.0f} |")
                print(lines[-1], flush=True)
    shortest, longest = min(args.lengths), max(args.lengths)
    notes = [f"peak RSS {longest:g} min / {shortest:g} min ({e}, {sp}): "
             f"{rss[(e, sp, longest)] / rss[(e, sp, shortest)]:.2f}x" for e in args.engines for sp in args.splits]
    table = "\n".join(lines + [""] + notes) + "\n"
    (args.out / f"long_form-{'-'.join(args.engines)}.md").write_text(table, encoding="utf-8")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
