"""Retrieval results as TSV, markdown, LaTeX and PNG (heatmap, layer sweep)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speechalign.atomic import save_figure, write_text
from speechalign.retrieval.yubao import YubaoResult, mean_off_diagonal
from speechalign.tables import markdown, tsv

METRICS = ("R@1", "R@5", "R@10", "MRR")


def write_pair_table(rows: list[dict], out_dir: Path, name: str, title: str) -> dict[str, Path]:
    header = ["query", "gallery", *METRICS, "queries", "skipped"]
    body = [[r["query"], r["gallery"], *[f"{r[m]:.4f}" for m in METRICS], r["queries"], r["skipped"]] for r in rows]
    return {"tsv": write_text(out_dir / f"{name}.tsv", f"# {title}\n" + tsv(header, body)),
            "md": write_text(out_dir / f"{name}.md", f"{title}\n\n" + markdown(header, body))}


def write_neighbours(neighbours: list[tuple], utt_ids: list[str], path: Path, title: str) -> Path:
    """Each query's top-k gallery items (from ``retrieve(..., neighbours=)``): what the HTML page lists.
    In a ``neighbours/`` subdirectory, so globs over a run's pair tables do not pick it up."""
    lines = [f"# {title}", "query\tquery_dialect\tgallery_dialect\trank\tneighbour\tscore\tcorrect"]
    lines += [f"{utt_ids[q]}\t{a}\t{b}\t{r}\t{utt_ids[g]}\t{s:.4f}\t{int(c)}" for a, b, q, r, g, s, c in neighbours]
    return write_text(path, "\n".join(lines) + "\n")


def _cell(v: float) -> str:
    return "" if np.isnan(v) else f"{v:.1f}"


def write_yubao(result: YubaoResult, out_dir: Path, name: str, title: str) -> dict[str, Path]:
    """8x8-style table (source rows, target columns, R@1 %) in TSV/MD/LaTeX, a heatmap and site pairs."""
    g = result.subgroups
    note = ("diagonal: distinct sites within a subgroup (extension, not in the reference protocol)"
            if result.diagonal else "diagonal empty, as in the reference protocol")
    rows = [[src, *[_cell(v) for v in result.table[i]]] for i, src in enumerate(g)]
    mean = mean_off_diagonal(result.table)
    summary = f"mean over off-diagonal subgroup pairs: {mean:.2f}"
    paths = {
        "tsv": write_text(out_dir / f"{name}.tsv", f"# {title}; R@1 %, rows = source, columns = target; {note}\n"
                      + tsv(["source\\target", *g], rows)),
        "md": write_text(out_dir / f"{name}.md", f"{title}\n\nR@1 (%), rows = source subgroup, columns = target; "
                     f"{note}; {summary}.\n\n" + markdown(["source \\ target", *g], rows)),
        "tex": write_text(out_dir / f"{name}.tex", _latex(g, result.table, title, note)),
        "sites": write_text(out_dir / f"{name}-site-pairs.tsv",
                            tsv(["source_group", "target_group", "source_site", "target_site", "sentences", "R@1"],
                                ([*r[:5], f"{r[5]:.2f}"] for r in result.per_site_pair))),
    }
    paths["png"] = heatmap(result.table, g, out_dir / f"{name}.png", f"{title}\nR@1 (%) — {note}")
    return paths


def _latex(groups: list[str], table: np.ndarray, title: str, note: str) -> str:
    esc = [s.replace("_", r"\_") for s in groups]
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * len(groups) + "}", r"\toprule",
             " & ".join(["src $\\backslash$ trg", *esc]) + r" \\", r"\midrule"]
    lines += [" & ".join([esc[i], *[_cell(v) or "--" for v in table[i]]]) + r" \\" for i in range(len(groups))]
    lines += [r"\bottomrule", r"\end{tabular}", f"\\caption{{{title.replace('_', ' ')}: R@1 (\\%); {note}.}}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"


def wrap_title(title: str, width_in: float, fontsize: float) -> str:
    """Break each line of a title to fit ``width_in`` inches (average glyph ~0.55 em; a long path with
    no space is cut where it must)."""
    import textwrap

    chars = max(20, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in title.splitlines())


def heatmap(table: np.ndarray, labels: list[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # At least 5 inches wide so a 3-subgroup matrix still has room for its wrapped title.
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.8 * len(labels)), 0.8 + 0.7 * len(labels) + 0.6))
    im = ax.imshow(np.ma.masked_invalid(table), cmap="viridis", vmin=0, vmax=100)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("target subgroup")
    ax.set_ylabel("source subgroup")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if np.isfinite(table[i, j]):
                ax.text(j, i, f"{table[i, j]:.0f}", ha="center", va="center",
                        color="white" if table[i, j] < 60 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, label="R@1 (%)")
    # Centred on the figure, not on the axes (which the colorbar pushes left), so it can use the full width.
    fig.suptitle(wrap_title(title, fig.get_figwidth() * 0.9, 9), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def sweep_plot(layers: list[int], series: dict[str, list[float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, values in series.items():
        ax.plot(layers, values, marker="o", label=label)
    ax.set_xlabel("encoder layer (0 = input embedding)")
    ax.set_ylabel("R@1")
    ax.set_ylim(0, 1)
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(wrap_title(title, fig.get_figwidth() * 0.9, 9), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
