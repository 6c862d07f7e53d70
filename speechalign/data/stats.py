"""Per-dialect statistics of manifests and warnings about suspicious data."""

from __future__ import annotations

from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechalign.data.manifest import DuplicateIds, ManifestError, cut_meta, iter_cuts, refuse_duplicates, split_name


@dataclass
class Stats:
    rows: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0.0, set()]))
    warnings: list[str] = field(default_factory=list)

    def table(self) -> str:
        header = f"{'split':<16}{'dialect':<20}{'utts':>8}{'hours':>9}{'speakers':>10}"
        lines = [header, "-" * len(header)]
        totals = [0, 0.0]
        for (split, dialect), (n, sec, spk) in sorted(self.rows.items()):
            lines.append(f"{split:<16}{dialect:<20}{n:>8}{sec / 3600:>9.3f}{len(spk):>10}")
            totals[0] += n
            totals[1] += sec
        lines.append(f"{'total':<36}{totals[0]:>8}{totals[1] / 3600:>9.3f}")
        return "\n".join(lines)


def manifest_stats(paths: list[str | Path], outlier_factor: float = 3.0, max_listed: int = 5) -> Stats:
    """Count utterances/hours/speakers per (split, dialect) and flag zero-length audio, empty text
    and duration outliers (outside median ± ``outlier_factor``·IQR of their split, or > 60 s); duplicate
    ids are an error. One streaming pass, 16 bytes per cut (a duration and an id hash)."""
    stats = Stats()
    dups, empty = DuplicateIds(), []
    for path in paths:
        split = split_name(path)
        durations = array("d")
        empty_audio, empty_text = [], []
        for cut in iter_cuts(path):
            dups.add(cut.id)
            meta = cut_meta(cut)
            row = stats.rows[(split, meta["dialect"])]
            row[0] += 1
            row[1] += cut.duration
            if meta["speaker"]:
                row[2].add(meta["speaker"])
            if cut.duration <= 0:
                empty_audio.append(cut.id)
            if not meta["text"]:
                empty_text.append(cut.id)
            durations.append(cut.duration)
        name = Path(path).name
        if not durations:
            # One empty split among several is a data warning (a corpus may lack one); all empty is an error.
            empty.append(path)
            stats.warnings.append(f"{name}: no cuts (empty manifest)")
            continue
        for what, bad in (("zero-length audio", empty_audio), ("empty text", empty_text)):
            if bad:
                stats.warnings.append(f"{name}: {len(bad)} cut(s) with {what}: {', '.join(bad[:max_listed])}")
        if len(durations) >= 4:
            d = np.frombuffer(durations, dtype=np.float64)
            q1, med, q3 = np.percentile(d, [25, 50, 75])
            spread = max(q3 - q1, 0.1 * med)
            lo, hi = med - outlier_factor * spread, min(med + outlier_factor * spread, 60.0)
            flagged = np.flatnonzero((d < lo) | (d > hi))
            if len(flagged):
                # Ids are not kept in memory; a second pass names the first few outliers.
                listed = set(flagged[:max_listed].tolist())
                out = [f"{cut.id} ({cut.duration:.2f}s)" for i, cut in enumerate(iter_cuts(path)) if i in listed]
                stats.warnings.append(
                    f"{name}: {len(flagged)} duration outlier(s) outside [{max(lo, 0):.2f}, {hi:.2f}] s: "
                    + ", ".join(out))
    if len(empty) == len(paths):
        raise ManifestError(f"{', '.join(map(str, empty))}: no cuts (empty manifest)")
    refuse_duplicates(paths, dups)
    return stats
