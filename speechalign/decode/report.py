"""Result files of one (test set, decode mode): recogs, errs and the per-dialect CER table."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from speechalign.atomic import write_text
from speechalign.decode.cer import CerScorer
from speechalign.text import describe, normalize
from speechalign.tables import markdown, tsv

log = logging.getLogger("speechalign.decode")


@dataclass
class Utterance:
    id: str
    dialect: str
    ref: str
    hyp: str


# The recogs file's first two lines, written by write_reports and checked by read_recogs.
_RECOGS_HEADER = re.compile(r"^# set=(\S+) mode=(\S+) ")
_RECOGS_COLUMNS = "id\tdialect\treference\thypothesis"


def _alignment_lines(ref: str, hyp: str, chunks) -> tuple[str, str, list[tuple[str, str, str]]]:
    """Space-joined aligned reference/hypothesis rows (``*`` marks a gap) and the error events."""
    r_row, h_row, events = [], [], []
    for ch in chunks:
        r, h = ref[ch.ref_start_idx : ch.ref_end_idx], hyp[ch.hyp_start_idx : ch.hyp_end_idx]
        if ch.type == "equal":
            r_row += list(r)
            h_row += list(h)
        elif ch.type == "substitute":
            r_row += list(r)
            h_row += list(h)
            events += [("sub", a, b) for a, b in zip(r, h)]
        elif ch.type == "delete":
            r_row += list(r)
            h_row += ["*"] * len(r)
            events += [("del", a, "") for a in r]
        else:
            r_row += ["*"] * len(h)
            h_row += list(h)
            events += [("ins", "", b) for b in h]
    return " ".join(r_row), " ".join(h_row), events


def cer_table(scorer: CerScorer, fmt: str) -> str:
    header = ["dialect", "CER%", "chars", "correct", "sub", "del", "ins", "utts"]
    rows = [[d, f"{100 * c.cer:.2f}", c.chars, c.hits, c.subs, c.dels, c.ins, c.utts] for d, c in scorer.rows()]
    return tsv(header, rows) if fmt == "tsv" else markdown(header, rows)


def write_reports(out_dir: Path, set_name: str, mode: str, utts: list[Utterance], note: str = "",
                  normalize_kwargs: dict | None = None, top: int = 20, max_named: int = 50) -> CerScorer:
    """Score ``utts`` (micro-averaged per dialect) and write recogs/errs/cer files; returns the scorer.
    An utterance with an empty reference is kept in recogs (its hypothesis is still output) but not
    scored: the headers count and name such utterances, the markdown table lists them below it."""
    kwargs = normalize_kwargs or {}
    scorer = CerScorer(normalize_kwargs=kwargs)
    recogs, errs, events = [], [], Counter()
    for u in sorted(utts, key=lambda u: u.id):
        ref, hyp = normalize(u.ref, **kwargs), normalize(u.hyp, **kwargs)
        recogs.append(f"{u.id}\t{u.dialect}\t{ref}\t{hyp}")
        scored = scorer.add_normalized(ref, hyp, u.dialect, u.id)
        if scored is None:
            continue
        counts, chunks = scored
        r_row, h_row, ev = _alignment_lines(ref, hyp, chunks)
        events.update(ev)
        errs.append(f"{u.id}\t{u.dialect}\terrors={counts.errors}/{counts.chars}\n  ref: {r_row}\n  hyp: {h_row}")
    skipped = scorer.skipped_note()
    if skipped:
        log.warning("%s %s: %s", set_name, mode, skipped)
        note = f"{note}; {skipped}" if note else skipped
    header = f"# set={set_name} mode={mode} normalization: {describe(**kwargs)}{'; ' + note if note else ''}\n"
    stem = f"{set_name}-{mode}"
    write_text(out_dir / f"recogs-{stem}.txt", header + _RECOGS_COLUMNS + "\n" + "\n".join(recogs) + "\n")
    summary = ["", f"# most frequent errors (top {top})"]
    for kind in ("sub", "del", "ins"):
        summary.append(f"## {kind}")
        summary += [f"{n}\t{a}->{b}" if kind == "sub" else f"{n}\t{a or b}"
                    for (k, a, b), n in events.most_common() if k == kind][:top]
    write_text(out_dir / f"errs-{stem}.txt", header + "\n".join(errs) + "\n" + "\n".join(summary) + "\n")
    write_text(out_dir / f"cer-{stem}.tsv", header + cer_table(scorer, "tsv"))
    listed = ""
    if scorer.skipped:
        ids = [f"`{i}` ({d})" for i, d in scorer.skipped[:max_named]]
        more = f", ... and {len(scorer.skipped) - max_named} more" if len(scorer.skipped) > max_named else ""
        listed = f"\nNot scored, empty reference ({len(scorer.skipped)}): {', '.join(ids)}{more}.\n"
    write_text(out_dir / f"cer-{stem}.md", f"CER (micro-averaged per dialect), set `{set_name}`, mode `{mode}`.\n"
            f"Normalization (reference and hypothesis): {describe(**kwargs)}.{' ' + note if note else ''}\n\n"
            + cer_table(scorer, "md") + listed)
    return scorer


@dataclass
class Recogs:
    """A ``recogs-<set>-<mode>.txt`` file as :func:`write_reports` wrote it (texts already normalized)."""

    set_name: str
    mode: str
    header: str            # its first line without "# ": set, mode, normalization and decode note
    utts: list[Utterance]


def read_text_file(path: str | Path) -> dict[str, str]:
    """``id<TAB>text`` or Kaldi-style ``id text`` lines; duplicate ids are an error. Here, below both
    ``run`` (score) and ``translation`` (score-translation --hyp), which read such files."""
    out = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        key, _, text = line.partition("\t") if "\t" in line else line.partition(" ")
        if key in out:
            raise ValueError(f"{path}:{n}: duplicate id {key!r}")
        out[key] = text
    return out


def read_recogs(path: str | Path) -> Recogs:
    """Read back a recogs file of :func:`write_reports`; anything else is a ValueError naming the file."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    head = _RECOGS_HEADER.match(lines[0]) if lines else None
    if head is None or len(lines) < 2 or lines[1] != _RECOGS_COLUMNS:
        raise ValueError(f"{path}: not a recogs file (expected a '# set=... mode=...' line, then "
                         f"{_RECOGS_COLUMNS!r})")
    utts, seen = [], set()
    for n, line in enumerate(lines[2:], 3):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise ValueError(f"{path}:{n}: expected 4 tab-separated fields, got {len(fields)}")
        if fields[0] in seen:
            raise ValueError(f"{path}:{n}: duplicate id {fields[0]!r}")
        seen.add(fields[0])
        utts.append(Utterance(*fields))
    return Recogs(head.group(1), head.group(2), lines[0].removeprefix("# "), utts)


def report_set(out_dir: Path, set_name: str, mode: str, utts: list[Utterance], rtf: float, note: str) -> CerScorer:
    """Write one decoded set's reports and log its overall CER (every decoder ends with this)."""
    scorer = write_reports(out_dir, set_name, mode, utts, note=note)
    overall = scorer.overall()
    if not overall.utts:
        log.warning("%s %s: no utterance with a reference text, no CER (RTF %.4f); reports in %s", set_name, mode,
                    rtf, out_dir)
        return scorer
    log.info("%s %s: CER %.2f%% over %d utterances (RTF %.4f); reports in %s", set_name, mode,
             100 * overall.cer, overall.utts, rtf, out_dir)
    return scorer


def read_cer_table(path: Path) -> dict[str, float]:
    """dialect -> CER % of a ``cer-<set>-<mode>.tsv`` file."""
    rows = [ln.split("\t") for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    if not rows or rows[0][:2] != ["dialect", "CER%"]:
        raise ValueError(f"{path}: not a CER table (expected a 'dialect<TAB>CER%' header)")
    return {r[0]: float(r[1]) for r in rows[1:]}


def compare_cer(systems: list[tuple[str, Path | None]], out: Path, title: str, order: list[str] | None = None) -> Path:
    """One row per system (``None`` path: a system without an ASR output, shown as n/a), one column per
    dialect, overall last; written as TSV and markdown."""
    tables = {label: read_cer_table(p) if p is not None else {} for label, p in systems}
    dialects = [d for d in order or [] if any(d in t for t in tables.values())]
    dialects += sorted({d for t in tables.values() for d in t} - set(dialects) - {"overall"}) + ["overall"]
    header = ["system", *dialects]
    rows = [[label, *(f"{t[d]:.1f}" if d in t else "n/a" for d in dialects)] for label, t in tables.items()]
    write_text(out.with_suffix(".tsv"), tsv(header, rows))
    md = (f"{title}\n\nCER % (micro-averaged per variety; n/a = no transcripts: the system has no ASR output).\n\n"
          + markdown(header, rows))
    write_text(out.with_suffix(".md"), md)
    return out.with_suffix(".md")


def lm_effect_table(decode_dir: Path) -> str | None:
    """Markdown: for every ``cer-<set>-<mode>+lm[+...].tsv`` in ``decode_dir`` beside its LM-free
    ``cer-<set>-<mode>[+...].tsv`` (the same reading: ``+packed``, ...), each variety's CER without and with the LM
    and the change; None if no pair."""
    sections = []
    for with_lm in sorted(Path(decode_dir).glob("cer-*+lm*.tsv")):
        without = with_lm.with_name(with_lm.name.replace("+lm", "", 1))
        if not without.is_file():
            continue
        base, lm = read_cer_table(without), read_cer_table(with_lm)
        header = with_lm.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
        described = re.search(r"LM \S+ \(weight [^)]*\)", header)   # as LMOptions.describe() writes it
        lm_desc = described.group(0) if described else "LM"
        dialects = sorted(set(base) & set(lm) - {"overall"}) + ["overall"]
        rows = [f"| {d} | {base[d]:.2f} | {lm[d]:.2f} | {lm[d] - base[d]:+.2f} |" for d in dialects]
        name = with_lm.stem.removeprefix("cer-").replace("+lm", "", 1)
        sections.append(f"### {name}: {lm_desc}\n\n| variety | CER % without LM | with LM | change |\n"
                        "|---|---|---|---|\n" + "\n".join(rows) + "\n")
    return "## Character LM: CER without and with it\n\n" + "\n".join(sections) if sections else None


def lm_effect(decode_dir: Path) -> Path | None:
    """Write ``lm_effect_table`` to ``decode_dir/lm-effect.md``; None (nothing written) if no pair."""
    table = lm_effect_table(decode_dir)
    if table is None:
        return None
    out = Path(decode_dir) / "lm-effect.md"
    write_text(out, table)
    return out
