import pytest

from speechalign.atomic import save_figure, save_weights, write_text


def test_write_text_replaces_and_creates_the_directory(tmp_path):
    path = write_text(tmp_path / "a" / "b.tsv", "x\t1\n")
    assert path.read_text(encoding="utf-8") == "x\t1\n"
    write_text(path, "粵語\n")
    assert path.read_text(encoding="utf-8") == "粵語\n"
    assert [p.name for p in path.parent.iterdir()] == ["b.tsv"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = write_text(tmp_path / "t.md", "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_text(path, "half \ud800")   # a lone surrogate cannot be encoded: the write fails midway
    assert path.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.md"]


def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "p.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]


def test_save_weights_round_trips_and_a_failed_write_keeps_the_old_file(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = save_weights(tmp_path / "w" / "avg.safetensors", {"a": torch.arange(6.0).reshape(2, 3).T}, {"from": "x"})
    assert torch.equal(load_file(str(path))["a"], torch.arange(6.0).reshape(2, 3).T)
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"from": "x"}
    with pytest.raises(AttributeError):
        save_weights(path, {"a": "not a tensor"})   # fails before anything is written over the old file
    assert torch.equal(load_file(str(path))["a"], torch.arange(6.0).reshape(2, 3).T)
    assert [p.name for p in path.parent.iterdir()] == ["avg.safetensors"]
