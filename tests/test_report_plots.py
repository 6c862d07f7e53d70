"""Plots: long titles stay inside the figure; the dev-CER panel is a curve, or a per-dialect comparison when
validation ran once (never a lone dot)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from speechalign.report import training_curve
from speechalign.retrieval.report import heatmap, sweep_plot

LONG = ("YuBao protocol (seqsim), layer 6, exp_dir=exp/synth/conformer_ctc, checkpoint=avg-last3\n"
        "R@1 (%) — diagonal empty, as in the reference protocol")


@pytest.fixture
def saved(monkeypatch):
    """Figures as they are saved (the plotting functions close them afterwards)."""
    figures = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def _inside(fig: Figure) -> bool:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()   # the saved figure is closed; draw it again
    width, height = fig.bbox.width, fig.bbox.height
    titles = [t for t in fig.texts if t.get_text()] + [ax.title for ax in fig.axes if ax.get_title()]
    assert titles
    return all(0 <= b.x0 and b.x1 <= width and 0 <= b.y0 and b.y1 <= height
               for b in (t.get_window_extent(renderer) for t in titles))


def test_long_titles_fit_in_the_heatmap_and_the_sweep_plot(saved, tmp_path):
    table = np.array([[np.nan, 80, 70], [75, np.nan, 60], [65, 55, np.nan]])
    heatmap(table, ["Mandarin", "Cantonese", "Hakka"], tmp_path / "h.png", LONG)
    sweep_plot([0, 1, 2], {"pooled: mean": [0.1, 0.5, 0.4]}, tmp_path / "s.png",
               "Layer sweep (mean-center); best layer: 1 (pooled, mean R@1 0.500), exp_dir=exp/synth/conformer_ctc")
    assert len(saved) == 2 and all(_inside(f) for f in saved)


def _events(exp_dir, valid_steps):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(exp_dir / "tensorboard"))
    for step in range(1, 31):
        writer.add_scalar("train/loss", 100.0 / step, step)
    for k, step in enumerate(valid_steps):
        writer.add_scalar("valid/loss", 50.0 / (k + 1), step)
        for d, cer in (("Mandarin", 0.5), ("Cantonese", 0.7)):
            writer.add_scalar(f"valid/cer/{d}", cer / (k + 1), step)
    writer.close()


def test_cer_panel_is_a_curve_over_several_validations(saved, tmp_path):
    _events(tmp_path, [10, 20, 30])
    training_curve(tmp_path, tmp_path / "c.png")
    cer_axes = saved[0].axes[1]
    assert [len(line.get_xdata()) for line in cer_axes.lines] == [3, 3]
    assert list(cer_axes.lines[0].get_xdata()) == [10, 20, 30]


def test_a_single_validation_compares_the_dialects(saved, tmp_path):
    _events(tmp_path, [30])
    training_curve(tmp_path, tmp_path / "c.png")
    cer_axes = saved[0].axes[1]
    assert not cer_axes.lines
    assert sorted(round(p.get_width(), 3) for p in cer_axes.patches) == [0.5, 0.7]
    assert "step 30, the only validation" in cer_axes.get_xlabel()
