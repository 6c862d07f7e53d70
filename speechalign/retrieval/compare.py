"""``speechalign compare``: one side-by-side table of many retrieval runs for one dialect pair."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from speechalign.atomic import save_figure, write_text
from speechalign.retrieval.yubao import mean_off_diagonal
from speechalign.tables import markdown, tsv


log = logging.getLogger("speechalign.retrieval")
COLUMNS = ("R@1", "R@5", "R@10", "MRR")
YUBAO_NAME = re.compile(r"^yubao-(?P<mode>pooled|seqsim|rerank)-L(?P<layer>\d+)-[a-z]+(?P<center>-center)?\.tsv$")
# retrieve-text's table (the cascade baseline, retrieval.text): one number, no layer.
YUBAO_TEXT_NAME = re.compile(r"^yubao-text-[a-z0-9]+\.tsv$")
TEXT_KEY = ("text", False)


def read_pair_table(path: Path) -> tuple[str, list[dict]]:
    """(title, rows) of a ``retrieve`` pair table TSV; rows are dicts keyed by the header."""
    lines = path.read_text(encoding="utf-8").splitlines()
    title = lines[0][2:] if lines and lines[0].startswith("# ") else ""
    body = [ln.split("\t") for ln in lines if ln and not ln.startswith("#")]
    if not body or not {"query", "gallery", *COLUMNS} <= set(body[0]):
        raise ValueError(f"{path}: not a retrieval pair table (expected columns query, gallery, {', '.join(COLUMNS)})")
    return title, [dict(zip(body[0], r)) for r in body[1:]]


def compare(tables: list[tuple[str, Path]], query: str, gallery: str, out: Path, title: str,
            best_per_system: bool = False) -> Path:
    """Rows: one per (label, table), for ``query -> gallery``. Tables without that pair are errors.
    ``best_per_system`` keeps each system's best row by R@1 (system = label up to its first ``/``)."""
    header = ["system", *COLUMNS, "queries", "chance R@1 ≈"]
    rows = []
    for label, path in tables:
        _, pairs = read_pair_table(path)
        match = [r for r in pairs if r["query"] == query and r["gallery"] == gallery]
        if not match:
            found = sorted({f"{r['query']}->{r['gallery']}" for r in pairs})
            raise ValueError(f"{path}: no row for {query}->{gallery}; pairs present: {found}")
        r = match[0]
        # Parallel sets: each answerable query has its own gallery item, so chance R@1 is about 1/queries.
        rows.append([label, *[f"{float(r[c]):.3f}" for c in COLUMNS], r["queries"], f"{1 / max(int(r['queries']), 1):.3f}"])
    rows.sort(key=lambda x: (-float(x[1]), -float(x[4])))
    if best_per_system:
        seen = set()
        rows = [r for r in rows if not (r[0].split("/")[0] in seen or seen.add(r[0].split("/")[0]))]
    md = f"{title}\n\n{query} → {gallery}; sorted by R@1.\n\n" + markdown(header, rows)
    write_text(out.with_suffix(".tsv"), tsv(header, rows))
    path = write_text(out.with_suffix(".md"), md)
    log.info("comparison of %d systems -> %s", len(rows), path)
    return path


def parse_table_args(items: list[str]) -> list[tuple[str, Path]]:
    """``LABEL=PATH`` or a bare PATH (labelled ``<parent dir>/<file stem>``)."""
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        p = Path(path) if sep else Path(item)
        if not p.is_file():
            raise FileNotFoundError(f"compare: {p} does not exist")
        out.append((label if sep else f"{p.parent.name}/{p.stem}", p))
    return out


def read_yubao_table(path: Path) -> np.ndarray:
    """The subgroup R@1 matrix of a ``retrieve --protocol yubao`` TSV (NaN where empty)."""
    rows = [ln.split("\t") for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    if not rows or not rows[0][0].startswith("source"):
        raise ValueError(f"{path}: not a YuBao table (expected a 'source\\target' header row)")
    return np.array([[float(c) if c.strip() else np.nan for c in r[1:]] for r in rows[1:]], dtype=float)


def yubao_runs(retrieval_dir: Path) -> dict[tuple[str, bool], dict[int | None, float]]:
    """(scoring mode, centered) -> {layer: mean off-diagonal R@1} from one system's YuBao tables; a
    retrieve-text table is ``TEXT_KEY`` -> {None: R@1}."""
    out: dict[tuple[str, bool], dict[int | None, float]] = {}
    for path in sorted(retrieval_dir.glob("yubao-*.tsv")):
        m = YUBAO_NAME.match(path.name)
        if m:
            key = (m["mode"], bool(m["center"]))
            out.setdefault(key, {})[int(m["layer"])] = mean_off_diagonal(read_yubao_table(path))
        elif YUBAO_TEXT_NAME.match(path.name):
            out.setdefault(TEXT_KEY, {})[None] = mean_off_diagonal(read_yubao_table(path))
    return out


def _at(layer: int | None) -> str:
    return "" if layer is None else f"L{layer}"


def best_run(runs: dict[tuple[str, bool], dict[int | None, float]]) -> tuple[float, tuple[str, bool], int | None]:
    """(R@1, (mode, centered), layer) of the best table of one system's ``yubao_runs`` (empty tables skipped)."""
    return max(((v, k, layer) for k, layers in runs.items() for layer, v in layers.items() if not np.isnan(v)),
               key=lambda t: (t[0], t[1], -1 if t[2] is None else t[2]))


def describe_run(key: tuple[str, bool], layer: int | None) -> str:
    """"seqsim, centered, L5"; a text table (no layer) is "text"."""
    mode, centered = key
    return ", ".join(x for x in (mode, "centered" if centered else "", _at(layer)) if x)


def compare_yubao(systems: list[tuple[str, Path]], out: Path, title: str) -> Path:
    """One row per system: the best layer's mean off-diagonal R@1 for every scoring mode and centering,
    and a layer-sweep plot (one panel per mode/centering, one line per system). A text system
    (retrieve-text: the cascade baseline) fills the ``text`` column and is a dashed level in every panel."""
    runs = {label: yubao_runs(d) for label, d in systems}
    empty = [label for label, r in runs.items() if not r]
    if empty:
        raise ValueError(f"compare-yubao: no yubao-*.tsv tables for {empty}")
    keys = sorted({k for r in runs.values() for k in r})
    header = ["system", *[f"{mode}{' centered' if c else ''}" for mode, c in keys], "best"]
    rows, best_of = [], {}
    for label, r in runs.items():
        cells = []
        for k in keys:
            layers = r.get(k, {})
            layer = max(layers, key=layers.get) if layers else None
            cell = f"{layers[layer]:.1f}" if layers else ""
            cells.append(cell + (f" ({_at(layer)})" if layer is not None else ""))
        best_of[label] = best_run(r)
        v, key, layer = best_of[label]
        rows.append([label, *cells, f"{v:.1f} ({describe_run(key, layer)})"])
    rows.sort(key=lambda x: -best_of[x[0]][0])
    write_text(out.with_suffix(".tsv"), tsv(header, rows))
    png = _layer_panels(runs, keys, out.with_suffix(".png"), title)
    path = write_text(out.with_suffix(".md"), f"{title}\n\nMean off-diagonal YuBao R@1 (%) at the best layer (in brackets); "
                  f"layer sweep: {png.name}.\n\n" + markdown(header, rows))
    log.info("YuBao comparison of %d systems -> %s", len(rows), path)
    return path


def _layer_panels(runs: dict, keys: list, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [k for k in keys if k != TEXT_KEY] or keys
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), sharey=True, squeeze=False)
    for ax, key in zip(axes[0], panels):
        for n, (label, r) in enumerate(runs.items()):
            color = colors[n % len(colors)]
            layers = r.get(key, {}) if key != TEXT_KEY else {}
            if layers:
                xs = sorted(layers)
                ax.plot(xs, [layers[x] for x in xs], marker="o", label=label, color=color)
            if TEXT_KEY in r:   # no layers: a level across the panel
                ax.axhline(r[TEXT_KEY][None], linestyle="--", color=color, label=f"{label} (text)")
        ax.set_title(f"{key[0]}{' centered' if key[1] else ''}", fontsize=9)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # encoders of any depth: whole layers only
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean off-diagonal R@1 (%)")
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
