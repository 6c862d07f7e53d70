"""``report --html``: a page built from a tiny fake evaluation (generated wavs, a hand-made embedding dir,
the real ``retrieve``), checked as HTML and, when Chromium is installed, rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from speechalign.cli import main
from speechalign.retrieval.run import RetrievalOptions, run_retrieve
from tests.conftest import write_tone

N = 6   # sentences; Mandarin and Cantonese each read all of them


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """exp/: audio/, a custom-format manifest with translations, emb/ (layer 1 pooled vectors; Cantonese
    sentence 5 planted on Mandarin sentence 0, so one query per direction misses) and retrieval/trained/."""
    from data_prep.custom import prepare_custom

    root = tmp_path_factory.mktemp("page")
    corpus = root / "corpus"
    rows = ["audio\ttext\tdialect\tsentence_id\ttranslation"]
    for d, dialect in enumerate(("Mandarin", "Cantonese")):
        for s in range(N):
            write_tone(corpus / f"{dialect}{s}.wav", seconds=0.3, freq=300 + 50 * s + 7 * d)
            rows.append(f"{dialect}{s}.wav\t句子{s}</script>\t{dialect}\ts{s}\tsentence {s} & <b>")
    corpus.mkdir(exist_ok=True)
    (corpus / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    prepare_custom(corpus, root / "manifests", corpus="fake")
    cuts = root / "manifests" / "fake_cuts_test.jsonl.gz"

    emb = root / "emb"
    (emb / "shards").mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.standard_normal((N, 16)).astype(np.float32)
    cantonese = base + 0.05 * rng.standard_normal(base.shape).astype(np.float32)
    cantonese[5] = base[0]
    vectors = np.concatenate([base, cantonese])
    ids = [f"fake-{d}{s}" for d in ("Mandarin", "Cantonese") for s in range(N)]
    from speechalign.data.manifest import iter_cuts

    by_wav = {Path(c.recording.sources[0].source).stem: c.id for c in iter_cuts(cuts)}
    ids = [by_wav[f"{d}{s}"] for d in ("Mandarin", "Cantonese") for s in range(N)]
    np.savez(emb / "shards" / "shard-00000.npz", lengths=np.ones(2 * N, np.int64), pooled_mean_L1=vectors)
    (emb / "meta.tsv").write_text("id\tdialect\tsite\tsubgroup\tsentence_id\tframes\n" + "".join(
        f"{i}\t{d}\t\t\ts{s}\t1\n" for i, (d, s) in zip(ids, [(d, s) for d in ("Mandarin", "Cantonese")
                                                                  for s in range(N)])), encoding="utf-8")
    (emb / "info.yaml").write_text(yaml.safe_dump({
        "source": {"features": "fake"}, "layers": [1], "pooling": ["mean"], "frames": False, "dims": {1: 16},
        "num_utterances": 2 * N, "num_shards": 1, "shard_size": 256, "cuts": [str(cuts)]}), encoding="utf-8")
    ret = root / "retrieval" / "trained"
    run_retrieve(emb, ret, RetrievalOptions(layer=1))
    _png(ret / "sweep-mean.png")
    return root, ids, vectors


def _png(path: Path) -> None:
    """A 4x4 grey PNG standing in for a plot (matplotlib is not what is tested here)."""
    raw = b"".join(b"\x00" + b"\x80" * 4 for _ in range(4))
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _data(page: str) -> dict:
    blob = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1)
    return json.loads(blob)


def test_retrieve_writes_top5_and_the_page_lists_them(evaluation):
    root, ids, vectors = evaluation
    top = (root / "retrieval" / "trained" / "neighbours" / "pooled-L1-mean.tsv").read_text().splitlines()
    assert top[0].startswith("# Retrieval (pooled), layer 1") and top[0].endswith(f"emb-dir: {root / 'emb'}")
    assert len(top) == 2 + 2 * N * 5
    assert main(["report", "--out-dir", str(root / "out"), "--retrieval-dir", str(root / "retrieval"), "--html"]) == 0
    page = (root / "out" / "retrieval.html").read_text(encoding="utf-8")
    data = _data(page)
    (run,) = data["runs"]
    assert (run["source"], run["protocol"], run["layer"], run["center"]) == ("trained", "pooled", 1, False)
    rows = {(pair, q): items for pair, q, items in run["rows"]}
    assert len(rows) == 2 * N and all(len(items) == 5 for items in rows.values())
    # The planted miss: Cantonese sentence 5 finds Mandarin sentence 0 first, its own sentence lower.
    miss = rows[("Cantonese → Mandarin", ids[N + 5])]
    assert miss[0][0] == ids[0] and not miss[0][2] and any(c for _, _, c in miss[1:])
    # Every top-1 mark is what cosine similarity says.
    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = x[:N] @ x[N:].T
    expected = {ids[q] for q in range(N) if sims[q].argmax() != q} | {ids[N + q] for q in range(N) if sims[:, q].argmax() != q}
    assert {key[1] for key, items in rows.items() if not items[0][2]} == expected
    assert run["pairs"]["Cantonese → Mandarin"]["r1"] == pytest.approx(5 / 6, abs=1e-4)   # the TSV has 4 decimals
    # Audio relative to the page; text, translation; the text cannot close the data block.
    u = data["utts"][ids[3]]
    assert u["a"] == "../corpus/Mandarin3.wav" and u["tr"] == "sentence 3 & <b>" and "</script>" in u["t"]
    assert page.count("</script>") == 2
    assert data["figures"] == [{"source": "trained", "name": "sweep-mean", "layer": None,
                                "src": "../retrieval/trained/sweep-mean.png"}]


def test_embed_audio_respects_the_size_cap(evaluation, tmp_path):
    from speechalign.retrieval.page import write_page

    root, ids, vectors = evaluation
    size = (root / "corpus" / "Mandarin0.wav").stat().st_size
    page = write_page(root / "retrieval", tmp_path / "a.html", embed_audio=True, embed_max_kb=size // 1024 + 1)
    assert _data(page.read_text())["utts"][ids[0]]["a"].startswith("data:audio/wav;base64,UklGR")
    page = write_page(root / "retrieval", tmp_path / "b.html", embed_audio=True, embed_max_kb=size // 1024 - 1,
                      max_queries=1)
    data = _data(page.read_text())
    assert data["utts"][ids[0]]["a"].endswith("corpus/Mandarin0.wav")
    assert sorted(len([r for r in data["runs"][0]["rows"] if r[0] == p]) for p in data["runs"][0]["pairs"]) == [1, 1]


def test_bad_inputs_name_the_file(evaluation, tmp_path):
    from speechalign.retrieval.page import write_page

    root, *_ = evaluation
    with pytest.raises(ValueError, match="no neighbours/.*and no plots"):
        write_page(tmp_path, tmp_path / "x.html")
    bad = tmp_path / "r" / "s" / "neighbours"
    bad.mkdir(parents=True)
    (bad / "pooled-L1-mean.tsv").write_text("query\tneighbour\n")
    with pytest.raises(ValueError, match=r"pooled-L1-mean.tsv:1: expected '# <title>; emb-dir: <dir>'"):
        write_page(tmp_path / "r", tmp_path / "x.html")
    assert main(["report", "--out-dir", str(tmp_path), "--retrieval-dir", str(tmp_path / "r")]) == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (tools/install.sh --test installs it)")
def test_page_renders_in_headless_chromium(evaluation, tmp_path):
    root, *_ = evaluation
    page = root / "out" / "chromium.html"
    from speechalign.retrieval.page import write_page

    write_page(root / "retrieval", page)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-extensions", "--mute-audio", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60).stdout
    body = dom.split('<tbody>', 1)[1].split('</tbody>', 1)[0]
    # After the script ran: the default view lists every query of every pair, each with 6 players.
    assert body.count("<tr>") == 2 * N
    assert body.count("<audio") == 2 * N * 6
    assert body.count('class="bad"') >= 1 and body.count("✓") >= N
    assert '<option value="Cantonese → Mandarin">' in dom
    shot = tmp_path / "page.png"
    subprocess.run(flags + ["--window-size=1280,900", "--hide-scrollbars", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=60)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (900, 1280) and pixels.std() > 10   # not a blank page
