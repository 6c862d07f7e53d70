"""The contamination guard: training cuts whose normalized text is a text of an evaluation manifest are
dropped, each drop a counted skip in a :class:`PrepReport` written beside the output.

It sits in ``speechalign/data/`` so that everything building training material imports it downwards:
the corpus adapters and ``prepare filter`` (``data_prep/``, ``--exclude-texts-from``), ``train-lm``
(``speechalign/decode/lm.py``); the trainer may import it too.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from speechalign.atomic import write_text
from speechalign.text import normalize

if TYPE_CHECKING:   # lhotse imports torch (2 s); the CLI builds its parser from this module's option
    from lhotse.cut import Cut

log = logging.getLogger("speechalign.data")


@dataclass
class PrepReport:
    """Counted skips and notes for one run (an adapter's, ``prepare filter``'s, ``train-lm``'s), written
    beside its output as ``<corpus>_prep_report.txt``."""

    corpus: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kept: Counter = field(default_factory=Counter)

    def skip(self, item: str | Path, reason: str) -> None:
        self.skipped.append((str(item), reason))

    def note(self, message: str) -> None:
        self.notes.append(message)

    def counts(self) -> Counter:
        return Counter(reason.split(":")[0] for _, reason in self.skipped)

    def summary(self) -> str:
        kept = ", ".join(f"{split}: {n}" for split, n in sorted(self.kept.items())) or "nothing"
        line = f"{self.corpus}: kept {kept}; skipped {len(self.skipped)}"
        if self.skipped:
            line += " (" + ", ".join(f"{r}: {n}" for r, n in self.counts().most_common()) + ")"
        return line

    def write(self, output_dir: str | Path) -> Path:
        lines = [self.summary(), ""]
        lines += [f"note\t{n}" for n in self.notes]
        lines += [f"skip\t{item}\t{reason}" for item, reason in self.skipped]
        path = Path(output_dir) / f"{self.corpus}_prep_report.txt"
        write_text(path, "\n".join(lines) + "\n")
        log.info("%s (report: %s)", self.summary(), path)
        return path


def texts_of(manifest: str | Path) -> set[str]:
    """The normalized texts of a manifest's supervisions (empty texts left out)."""
    from speechalign.data.manifest import iter_cuts

    return {normalize(s.text or "") for cut in iter_cuts(manifest) for s in cut.supervisions} - {""}


def drop_contaminated(cuts: Iterable[Cut], eval_manifests: Iterable[str | Path], report: PrepReport) -> list[Cut]:
    """Cuts whose normalized text equals no text of the evaluation manifests; each drop is a counted
    skip naming the cut and the manifest, so a model is never trained on a sentence it is tested on."""
    owners: dict[str, Path] = {}
    for manifest in map(Path, eval_manifests):
        for text in texts_of(manifest):
            owners.setdefault(text, manifest)
    if not owners:
        return list(cuts)
    kept = []
    for cut in cuts:
        hit = next((owners[t] for t in (normalize(s.text or "") for s in cut.supervisions) if t in owners), None)
        if hit is None:
            kept.append(cut)
        else:
            report.skip(cut.id, f"contaminated: text {cut.supervisions[0].text!r} is in {hit}")
    return kept


def add_exclude_option(parser, required: bool = False) -> None:
    """``--exclude-texts-from MANIFEST ...``: the guard's option, on every training adapter and train-lm."""
    parser.add_argument("--exclude-texts-from", nargs="+", type=Path, metavar="MANIFEST", required=required,
                        default=None if required else (),
                        help="drop training cuts whose normalized text equals a text of these evaluation manifests "
                             "(counted in the prep report)")
