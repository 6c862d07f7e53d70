"""Translation scores of a "dialect speech -> Mandarin text" model: corpus BLEU (sacrebleu, ``tokenize="zh"``)
and chrF (sacrebleu's CHRF defaults) per dialect and overall, written as ``bleu-<set>-<mode>.tsv`` and ``.md``.

References are each cut's Mandarin translation (``supervisions[0].custom["translation"]``); a Mandarin cut
(:data:`~speechalign.data.manifest.MANDARIN_LABELS`) without one is its own translation (its ``text``); any
other cut without one cannot be scored and is skipped, counted and named in the report. This is
:func:`~speechalign.data.manifest.mandarin_reference`, the definition the translation targets use too.

References and hypotheses both pass through the project's ``normalize`` (as for CER), so punctuation,
spaces and script (traditional/simplified) never count; the zh tokenizer then makes every Han character
a token. Scores are corpus-level (n-gram statistics summed
over a group's sentences), never a mean of sentence scores: a group whose sentences are all shorter than
four characters has no 4-grams and scores BLEU 0 even when every hypothesis is exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

from lhotse.cut import Cut
from sacrebleu.metrics import BLEU, CHRF

from speechalign.data.manifest import cut_meta, open_cuts
from speechalign.atomic import write_text
from speechalign.decode.report import read_recogs, read_text_file
from speechalign.text import describe, normalize
from speechalign.tables import markdown, tsv

log = logging.getLogger("speechalign.decode")

TASK = "dialect speech -> Mandarin text (translation targets; not ASR-only)"


@dataclass(frozen=True)
class TranslationRow:
    group: str          # dialect label, or "overall"
    bleu: float         # corpus BLEU, 0-100
    chrf: float         # corpus chrF, 0-100
    sentences: int
    hyp_len: int        # BLEU's hypothesis and reference lengths in zh tokens (brevity penalty)
    ref_len: int


class TranslationRefs(NamedTuple):
    refs: dict[str, str]        # cut id -> reference Mandarin text (not yet normalized)
    groups: dict[str, str]      # cut id -> dialect, for every scored cut
    skipped: dict[str, str]     # cut id -> dialect: not Mandarin and no translation, so not scored


def _metrics() -> tuple[BLEU, CHRF]:
    return BLEU(tokenize="zh"), CHRF()


def signatures() -> tuple[str, str]:
    """sacrebleu's BLEU and chrF signatures of the scores below (metric settings and sacrebleu version)."""
    bleu, chrf = _metrics()
    for metric in (bleu, chrf):   # sacrebleu knows the number of references (always 1 here) after scoring
        metric.corpus_score(["一"], [["一"]])
    return bleu.get_signature().format(), chrf.get_signature().format()


def translation_refs(cuts: Iterable[Cut]) -> TranslationRefs:
    """References and dialect groups of a CutSet: each cut's :func:`~speechalign.data.manifest.mandarin_reference`
    (its translation, else a Mandarin cut's own text); a cut with neither, or whose reference is empty after
    normalization, is skipped."""
    refs, groups, skipped = {}, {}, {}
    for cut in cuts:
        meta = cut_meta(cut)
        if cut.id in groups or cut.id in skipped:
            raise ValueError(f"duplicate cut id {cut.id!r}")
        ref = meta["translation"] or ""
        if normalize(ref):
            refs[cut.id], groups[cut.id] = ref, meta["dialect"]
        else:
            skipped[cut.id] = meta["dialect"]
    return TranslationRefs(refs, groups, skipped)


def translation_scores(hyps: dict[str, str], refs: dict[str, str], groups: dict[str, str]) -> list[TranslationRow]:
    """Corpus BLEU and chrF per group (sorted) and overall (last), hypotheses and references normalized alike.
    ``hyps`` and ``refs`` must have the same ids, and ``groups`` must name each one's group."""
    if set(hyps) != set(refs):
        extra, missing = sorted(set(hyps) - set(refs)), sorted(set(refs) - set(hyps))
        raise ValueError(f"hypotheses and references differ: {len(extra)} hypothesis id(s) without a reference, "
                         f"e.g. {extra[:3]}; {len(missing)} reference id(s) without a hypothesis, e.g. {missing[:3]}")
    if not refs:
        raise ValueError("no sentences to score")
    if ungrouped := sorted(set(refs) - set(groups)):
        raise ValueError(f"{len(ungrouped)} id(s) without a group, e.g. {ungrouped[:3]}")
    members: dict[str, list[str]] = {}
    for key in sorted(refs):
        members.setdefault(groups[key], []).append(key)
    rows = []
    for group, keys in [*sorted(members.items()), ("overall", sorted(refs))]:
        bleu, chrf = _metrics()
        h = [normalize(hyps[k]) for k in keys]
        r = [[normalize(refs[k]) for k in keys]]
        b = bleu.corpus_score(h, r)
        rows.append(TranslationRow(group, b.score, chrf.corpus_score(h, r).score, len(keys), b.sys_len, b.ref_len))
    return rows


def translation_table(rows: list[TranslationRow], fmt: str, skipped: dict[str, str] | None = None) -> str:
    """The rows as TSV or markdown, with a ``skipped`` column (cuts of that dialect left unscored); a dialect
    whose cuts were all skipped gets a row of n/a scores."""
    per_dialect: dict[str, int] = {}
    for dialect in (skipped or {}).values():
        per_dialect[dialect] = per_dialect.get(dialect, 0) + 1
    table = {r.group: [f"{r.bleu:.2f}", f"{r.chrf:.2f}", r.sentences, r.hyp_len, r.ref_len] for r in rows}
    dialects = sorted((set(table) | set(per_dialect)) - {"overall"})
    header = ["dialect", "BLEU", "chrF", "sentences", "hyp_tokens", "ref_tokens", "skipped"]
    body = [[d, *table.get(d, ["n/a", "n/a", 0, 0, 0]), per_dialect.get(d, 0)] for d in dialects]
    body.append(["overall", *table["overall"], sum(per_dialect.values())])
    return tsv(header, body) if fmt == "tsv" else markdown(header, body)


def write_translation_reports(out_dir: str | Path, set_name: str, mode: str, rows: list[TranslationRow],
                              skipped: dict[str, str] | None = None, note: str = "", max_named: int = 200) -> Path:
    """Write ``bleu-<set>-<mode>.tsv`` and ``.md`` (each atomically); returns the markdown path. The headers
    give the task, the normalization, both sacrebleu signatures and the skipped cuts (named in the .md, up
    to ``max_named``)."""
    out_dir, skipped = Path(out_dir), skipped or {}
    bleu_sig, chrf_sig = signatures()
    norm = describe()
    skip_note = (f"skipped {len(skipped)} cut(s) without a Mandarin translation (not Mandarin, so their "
                 "transcript is no reference)" if skipped else "")
    notes = "; ".join(n for n in (skip_note, note) if n)
    stem = f"{set_name}-{mode}"
    tsv_head = [f"# set={set_name} mode={mode}: {TASK}", f"# normalization (reference and hypothesis alike): {norm}",
                f"# BLEU signature: {bleu_sig}", f"# chrF signature: {chrf_sig}"] + ([f"# {notes}"] if notes else [])
    write_text(out_dir / f"bleu-{stem}.tsv", "\n".join(tsv_head) + "\n" + translation_table(rows, "tsv", skipped))
    md = [f"Translation scores, set `{set_name}`, mode `{mode}`: {TASK}.", "",
          "Corpus BLEU (sacrebleu, zh tokenizer: one token per Han character) and chrF, per dialect and overall.",
          f"Normalization (reference and hypothesis alike): {norm}.", "",
          f"- BLEU signature: `{bleu_sig}`", f"- chrF signature: `{chrf_sig}`"]
    md += [f"- {notes}"] if notes else []
    md += ["", translation_table(rows, "md", skipped).rstrip("\n")]
    if skipped:
        named = sorted(skipped.items())
        md += ["", f"## Skipped: no Mandarin translation ({len(skipped)})", ""]
        md += [f"- `{cut_id}` ({dialect})" for cut_id, dialect in named[:max_named]]
        md += [f"- ... and {len(named) - max_named} more"] if len(named) > max_named else []
    write_text(out_dir / f"bleu-{stem}.md", "\n".join(md) + "\n")
    return out_dir / f"bleu-{stem}.md"


def score_translation(cuts: str | Path, out_dir: str | Path | None = None, recogs: str | Path | None = None,
                      hyp: str | Path | None = None, set_name: str | None = None,
                      mode: str | None = None) -> tuple[list[TranslationRow], Path]:
    """Score the hypotheses of a ``recogs-<set>-<mode>.txt`` file (``decode``'s output; set and mode from its
    header, reports beside it by default) or of an ``id<TAB>text`` file ``hyp`` (set ``external``, mode
    ``score``, like ``speechalign score``) against the translations in the manifest ``cuts``. A hypothesis id
    not in the manifest is an error; a scored cut without a hypothesis counts as an empty output (warned).
    Returns the rows (overall last) and the markdown report's path."""
    if (recogs is None) == (hyp is None):
        raise ValueError("score-translation: give a recogs file or a hypothesis file (not both)")
    if recogs is not None:
        rec = read_recogs(recogs)
        hyps = {u.id: u.hyp for u in rec.utts}
        source, default_out, default_set, default_mode = (f"recogs={recogs} ({rec.header})", Path(recogs).parent,
                                                          rec.set_name, rec.mode)
    else:

        hyps = read_text_file(hyp)
        source, default_out, default_set, default_mode = f"hyp={hyp}", Path("."), "external", "score"
    refs, groups, skipped = translation_refs(open_cuts(cuts))
    if unknown := sorted(set(hyps) - set(refs) - set(skipped)):
        raise ValueError(f"{recogs or hyp}: {len(unknown)} id(s) not in {cuts}, e.g. {unknown[:3]}")
    missing = sorted(set(refs) - set(hyps))
    if missing:
        log.warning("%s: %d cut(s) with a reference have no hypothesis, scored as empty output, e.g. %s",
                    recogs or hyp, len(missing), missing[:3])
    if skipped:
        log.warning("%s: skipped %d cut(s) without a Mandarin translation (not Mandarin), e.g. %s", cuts,
                    len(skipped), sorted(skipped)[:3])
    if not refs:
        raise ValueError(f"{cuts}: no cut has a Mandarin translation (or is Mandarin), nothing to score")
    scored = {k: hyps.get(k, "") for k in refs}
    rows = translation_scores(scored, refs, groups)
    note = f"cuts={cuts}, {source}" + (f"; {len(missing)} cut(s) without a hypothesis scored as empty output"
                                       if missing else "")
    md = write_translation_reports(out_dir or default_out, set_name or default_set, mode or default_mode, rows,
                                   skipped, note)
    return rows, md
