"""A fine-tuned model as users take it away: the whole-Whisper export transcribing goo-gi test files with the
model card's own code (transformers' pipeline, and faster-whisper on the CTranslate2 conversion), against the
references. Run by stage 8 of egs/goo-gi/run.sh, after `speechalign export --format hf` and
`ct2-transformers-converter`.

    python egs/goo-gi/local/takeaway.py --exported DIR --cuts test.jsonl.gz --per-variety 2 --out takeaway.tsv
"""

import argparse
import sys
from pathlib import Path

from speechalign.atomic import write_text
from speechalign.data.dataset import read_item
from speechalign.data.manifest import cut_meta, open_cuts
from speechalign.decode.cer import CerScorer
from speechalign.models.model_card import card_namespace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exported", type=Path, required=True)
    p.add_argument("--cuts", required=True)
    p.add_argument("--per-variety", type=int, default=2, help="files per variety (the first by id)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    # The card's first blocks: transformers' pipeline, then faster-whisper (the later ones: encoder and CTC head).
    fns = card_namespace(args.exported, blocks=2)
    taken: dict[str, int] = {}
    rows, scorers = [], {"transformers pipeline": CerScorer(), "faster-whisper": CerScorer()}
    for cut in sorted(open_cuts(args.cuts), key=lambda c: c.id):
        meta = cut_meta(cut)
        if taken.get(meta["dialect"], 0) >= args.per_variety:
            continue
        taken[meta["dialect"]] = taken.get(meta["dialect"], 0) + 1
        wav = read_item(cut)
        hyps = {"transformers pipeline": fns["transcribe_whisper"](wav), "faster-whisper": fns["transcribe_faster_whisper"](wav)}
        for name, hyp in hyps.items():
            scorers[name].add(meta["text"], hyp, meta["dialect"], cut.id)
        rows.append([cut.id, meta["dialect"], meta["text"], *hyps.values()])
    lines = ["\t".join(["id", "variety", "reference", *scorers]), *("\t".join(r) for r in rows)]
    lines.append("\t".join(["CER %", "", "", *(f"{100 * s.overall().cer:.1f}" for s in scorers.values())]))
    write_text(args.out, "\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
