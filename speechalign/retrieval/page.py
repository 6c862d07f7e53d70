"""``speechalign report --html``: one static page to listen to what retrieval found.

Reads a retrieval directory (one subdirectory per embedding source, possibly nested): each run's
``neighbours/<run>.tsv`` (every query's top-5, written by ``retrieve``) and its pair table, plus the
heatmaps and layer plots, and the cut manifests named in the embedding dir's ``info.yaml`` (for the
audio, text and translation of every listed utterance). Filters by source, layer, run and dialect
pair are plain JavaScript over JSON embedded in the page; nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
from pathlib import Path

import yaml

from speechalign.retrieval.compare import read_pair_table
from speechalign.atomic import write_text

log = logging.getLogger("speechalign.retrieval")
RUN_NAME = re.compile(r"^(?P<protocol>[a-z]+)-L(?P<layer>\d+)-(?P<pool>[a-z]+)(?P<center>-center)?(?P<map>-procrustes)?$")
FIGURE_LAYER = re.compile(r"-L(\d+)-")
MIME = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".ogg": "audio/ogg", ".opus": "audio/ogg",
        ".m4a": "audio/mp4", ".png": "image/png"}
NEIGHBOUR_COLUMNS = ["query", "query_dialect", "gallery_dialect", "rank", "neighbour", "score", "correct"]


def _data_uri(path: Path) -> str:
    return f"data:{MIME.get(path.suffix.lower(), 'application/octet-stream')};base64," \
           f"{base64.b64encode(path.read_bytes()).decode('ascii')}"


def read_neighbours(path: Path) -> tuple[str, Path, list[list[str]]]:
    """(title, embedding dir, rows) of a ``neighbours/<run>.tsv``; a malformed file is an error naming its line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    head = lines[0] if lines else ""
    m = re.search(r"; emb-dir: (.+)$", head)
    if not head.startswith("# ") or not m:
        raise ValueError(f"{path}:1: expected '# <title>; emb-dir: <dir>' (written by speechalign retrieve)")
    if len(lines) < 2 or lines[1].split("\t") != NEIGHBOUR_COLUMNS:
        raise ValueError(f"{path}:2: expected the header {'/'.join(NEIGHBOUR_COLUMNS)}")
    rows = []
    for n, line in enumerate(lines[2:], 3):
        cells = line.split("\t")
        if len(cells) != len(NEIGHBOUR_COLUMNS):
            raise ValueError(f"{path}:{n}: expected {len(NEIGHBOUR_COLUMNS)} tab-separated fields, got {len(cells)}")
        rows.append(cells)
    return head[2:m.start()], Path(m.group(1)), rows


def utterances(emb_dir: Path, wanted: set[str]) -> dict[str, dict]:
    """id -> audio file, segment, dialect, text and translation, from the manifests ``embed`` read."""
    from speechalign.data.manifest import iter_cuts

    info_path = emb_dir / "info.yaml"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path}: not found (the embedding dir a neighbours file names; "
                                "needed for the audio paths)")
    info = yaml.safe_load(info_path.read_text(encoding="utf-8"))
    if not info.get("cuts"):
        raise ValueError(f"{info_path}: no 'cuts' field (re-run embed to record the manifests)")
    out = {}
    for manifest in info["cuts"]:
        for cut in iter_cuts(manifest):
            if cut.id not in wanted:
                continue
            sup = cut.supervisions[0] if cut.supervisions else None
            custom = (sup.custom if sup else None) or {}
            audio = None
            if cut.has_recording and cut.recording.sources and cut.recording.sources[0].type == "file":
                rec = cut.recording
                whole = cut.start <= 1e-3 and cut.duration >= rec.duration - 1e-3
                audio = (Path(rec.sources[0].source), None if whole else (cut.start, cut.end))
            out[cut.id] = {"dialect": (sup.language if sup else None) or "", "audio": audio,
                           "text": custom.get("raw_text") or (sup.text if sup else "") or "",
                           "translation": custom.get("translation") or ""}
    return out


def _audio_src(audio: tuple[Path, tuple[float, float] | None] | None, page_dir: Path, embed_max: int | None) -> str:
    if audio is None or not audio[0].is_file():
        return ""
    path, segment = audio
    if embed_max is not None and path.stat().st_size <= embed_max:
        src = _data_uri(path)
    else:
        src = os.path.relpath(path.resolve(), page_dir.resolve()).replace(os.sep, "/")
    return src + (f"#t={segment[0]:.2f},{segment[1]:.2f}" if segment else "")


def collect(retrieval_dir: Path, max_queries: int) -> tuple[list[dict], list[dict], dict[Path, set[str]]]:
    """Runs (one per neighbours TSV, first ``max_queries`` queries per dialect pair), figures, and the
    utterance ids each embedding dir must describe."""
    runs, wanted = [], {}
    for path in sorted(retrieval_dir.rglob("neighbours/*.tsv")):
        m = RUN_NAME.match(path.stem)
        if not m:
            continue
        title, emb_dir, rows = read_neighbours(path)
        source = path.parent.parent.relative_to(retrieval_dir).as_posix() or "."
        pair_stats = {}
        table = path.parent.parent / f"{path.stem}.tsv"
        if table.is_file():
            pair_stats = {f"{r['query']} → {r['gallery']}": {"r1": float(r["R@1"]), "queries": int(r["queries"])}
                          for r in read_pair_table(table)[1] if r["query"] != "mean"}
        queries: dict[tuple[str, str, str], list] = {}
        shown: dict[str, int] = {}
        for q, qd, gd, rank, g, score, correct in rows:
            pair = f"{qd} → {gd}"
            key = (pair, q, gd)
            if key not in queries:
                if shown.get(pair, 0) >= max_queries:
                    continue
                shown[pair] = shown.get(pair, 0) + 1
                queries[key] = []
            queries[key].append([g, round(float(score), 4), correct == "1"])
        ids = wanted.setdefault(emb_dir, set())
        for (_, q, _), items in queries.items():
            ids.add(q)
            ids.update(g for g, _, _ in items)
        mean_r1 = sum(v["r1"] for v in pair_stats.values()) / len(pair_stats) if pair_stats else 0.0
        runs.append({"source": source, "name": path.stem, "title": title, "protocol": m["protocol"],
                     "layer": int(m["layer"]), "center": bool(m["center"]), "map": bool(m["map"]),
                     "pairs": pair_stats, "r1": round(mean_r1, 4), "emb": str(emb_dir),
                     "rows": [[pair, q, items] for (pair, q, _), items in queries.items()]})
    figures = []
    for png in sorted(retrieval_dir.rglob("*.png")):
        if png.name.startswith("."):
            continue
        layer = FIGURE_LAYER.search(png.stem)
        figures.append({"source": png.parent.relative_to(retrieval_dir).as_posix() or ".", "name": png.stem,
                        "layer": int(layer.group(1)) if layer else None, "path": png})
    return runs, figures, wanted


def write_page(retrieval_dir: str | Path, out: str | Path, embed_audio: bool = False, embed_max_kb: int = 256,
               embed_images: bool = False, max_queries: int = 20, title: str = "Cross-dialect retrieval") -> Path:
    """The page at ``out``: audio referenced relative to it, or embedded (files up to ``embed_max_kb``)."""
    retrieval_dir, out = Path(retrieval_dir), Path(out)
    if not retrieval_dir.is_dir():
        raise FileNotFoundError(f"report --html: {retrieval_dir}: retrieval directory not found")
    runs, figures, wanted = collect(retrieval_dir, max_queries)
    if not runs and not figures:
        raise ValueError(f"report --html: {retrieval_dir}: no neighbours/*.tsv and no plots "
                         "(run speechalign retrieve first)")
    embed_max = embed_max_kb * 1024 if embed_audio else None
    utts = {}
    for emb_dir, ids in wanted.items():
        for uid, u in utterances(emb_dir, ids).items():
            utts[uid] = {"d": u["dialect"], "t": u["text"], "tr": u["translation"],
                         "a": _audio_src(u["audio"], out.parent, embed_max)}
    missing = sorted(set().union(*wanted.values()) - set(utts)) if wanted else []
    if missing:
        log.warning("report --html: %d listed utterances not in the manifests (e.g. %s); shown without audio",
                    len(missing), missing[0])
    for r in runs:
        del r["emb"]
    figs = [{"source": f["source"], "name": f["name"], "layer": f["layer"],
             "src": _data_uri(f["path"]) if embed_images
             else os.path.relpath(f["path"].resolve(), out.parent.resolve()).replace(os.sep, "/")} for f in figures]
    data = json.dumps({"runs": runs, "figures": figs, "utts": utts}, ensure_ascii=False, separators=(",", ":"))
    # No "<" at all inside the <script> block ("</script>" or "<!--" in a text would change how it parses);
    # JSON reads the \u003c escape back as "<".
    page = TEMPLATE.replace("%TITLE%", html.escape(title)).replace("%DATA%", data.replace("<", "\\u003c"))
    path = write_text(out, page)
    log.info("retrieval page: %d runs, %d figures, %d utterances -> %s (%d bytes)", len(runs), len(figs), len(utts),
             path, path.stat().st_size)
    return path


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%TITLE%</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:1.4em}
.filters{display:flex;gap:1.2em;flex-wrap:wrap;align-items:end;background:#f4f4f4;padding:.6em 1em;border-radius:6px}
.filters label{display:flex;flex-direction:column;font-size:.85em}
.figs{display:flex;flex-wrap:wrap;gap:1em} .figs figure{margin:0} .figs img{max-width:520px;border:1px solid #ddd}
.figs figcaption{font-size:.8em;color:#555}
table{border-collapse:collapse;margin-top:.6em;font-size:.85em} td,th{border:1px solid #ccc;padding:.3em;vertical-align:top}
th{background:#eee} td.q{background:#fafafa;min-width:14em} audio{width:13em;height:2em;display:block}
.ok{background:#e3f6e3} .mark{font-weight:bold} .ok .mark{color:#176c17} .bad .mark{color:#a33}
.tr{color:#555;font-style:italic} .id{color:#777;font-size:.85em} .stat{margin:.5em 0;font-size:.9em}
</style></head><body>
<h1>%TITLE%</h1>
<p>Each query's five best gallery items; ✓ marks an item with the query's sentence id (a correct retrieval).
Choose the embedding source, layer, run and dialect pair.</p>
<div class="filters">
<label>source<select id="source"></select></label>
<label>layer<select id="layer"></select></label>
<label>run<select id="run"></select></label>
<label>dialect pair<select id="pair"></select></label>
<label><span><input type="checkbox" id="misses"> only queries whose top-1 is wrong</span></label>
</div>
<h2>Plots</h2><div class="figs" id="figs"></div>
<h2>Queries</h2><div class="stat" id="stat"></div>
<table id="queries"><thead><tr><th>query</th><th>1</th><th>2</th><th>3</th><th>4</th><th>5</th></tr></thead>
<tbody></tbody></table>
<script type="application/json" id="data">%DATA%</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = id => document.getElementById(id);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; };
function fill(sel, values, labels, fallback) {
  const keep = sel.value; sel.innerHTML = "";
  values.forEach((v, i) => { const o = el("option", "", labels ? labels[i] : v); o.value = v; sel.appendChild(o); });
  if (values.includes(keep)) sel.value = keep; else if (fallback !== undefined) sel.value = fallback;
}
const uniq = xs => [...new Set(xs)];
const runLabel = r => `${r.protocol}${r.center ? ", centered" : ""}${r.map ? ", procrustes" : ""}`;
function utt(id) {
  const u = D.utts[id] || {d: "", t: "", tr: "", a: ""}; const box = el("div");
  box.appendChild(el("div", "id", `${id} (${u.d})`));
  if (u.a) { const a = el("audio"); a.controls = true; a.preload = "none"; a.src = u.a; box.appendChild(a); }
  box.appendChild(el("div", "", u.t));
  if (u.tr) box.appendChild(el("div", "tr", u.tr));
  return box;
}
function sources() { return uniq(D.runs.map(r => r.source).concat(D.figures.map(f => f.source))).sort(); }
function update() {
  const src = $("source").value;
  const layers = uniq(D.runs.filter(r => r.source === src).map(r => r.layer)
    .concat(D.figures.filter(f => f.source === src && f.layer !== null).map(f => f.layer))).sort((a, b) => a - b);
  // The top layer first: "all" can mean dozens of heatmaps.
  fill($("layer"), ["all"].concat(layers.map(String)), ["all"].concat(layers.map(l => "L" + l)),
       layers.length ? String(layers[layers.length - 1]) : "all");
  const layer = $("layer").value;
  const runs = D.runs.filter(r => r.source === src && (layer === "all" || String(r.layer) === layer));
  // Default: the run with the best mean R@1 over its dialect pairs.
  const best = runs.reduce((a, r) => (a && a.r1 >= r.r1 ? a : r), null);
  fill($("run"), runs.map(r => r.name), runs.map(r => `${runLabel(r)}${layer === "all" ? ", L" + r.layer : ""}`
    + ` (R@1 ${r.r1.toFixed(3)})`), best ? best.name : undefined);
  const run = runs.find(r => r.name === $("run").value);
  const pairs = run ? uniq(run.rows.map(x => x[0])) : [];
  fill($("pair"), ["all"].concat(pairs));
  const figs = $("figs"); figs.innerHTML = "";
  D.figures.filter(f => f.source === src && (layer === "all" || f.layer === null || String(f.layer) === layer))
    .forEach(f => { const fig = el("figure"); const img = el("img"); img.src = f.src; img.alt = f.name;
      img.loading = "lazy"; fig.appendChild(img); fig.appendChild(el("figcaption", "", `${f.source}/${f.name}`));
      figs.appendChild(fig); });
  if (!figs.children.length) figs.textContent = "no heatmap or layer plot for this source and layer";
  const body = $("queries").tBodies[0]; body.innerHTML = "";
  if (!run) { $("stat").textContent = "no ranked lists for this source and layer"; return; }
  const pair = $("pair").value, misses = $("misses").checked;
  const stat = run.pairs[pair];
  $("stat").textContent = `${run.title}` + (stat ? ` — ${pair}: R@1 ${stat.r1.toFixed(3)} over ${stat.queries} queries` : "")
    + ` (listing at most the first queries of each pair)`;
  run.rows.filter(x => (pair === "all" || x[0] === pair) && (!misses || !(x[2][0] && x[2][0][2])))
    .forEach(([p, q, items]) => {
      const tr = el("tr"); const qc = el("td", "q"); qc.appendChild(utt(q)); tr.appendChild(qc);
      for (let i = 0; i < 5; i++) {
        const td = el("td"); const it = items[i];
        if (it) { td.className = it[2] ? "ok" : "bad";
          td.appendChild(el("span", "mark", it[2] ? "✓ " : "✗ ")); td.appendChild(el("span", "", it[1].toFixed(3)));
          td.appendChild(utt(it[0])); }
        tr.appendChild(td);
      }
      body.appendChild(tr);
    });
}
// Start on the source of the best run by mean R@1 (a YuBao-only source has plots alone).
fill($("source"), sources(), null, (D.runs.reduce((a, r) => (a && a.r1 >= r.r1 ? a : r), null) || {}).source);
["source", "layer", "run", "pair", "misses"].forEach(id => $(id).addEventListener("change", update));
update();
</script></body></html>
"""
