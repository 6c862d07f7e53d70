"""YuBao cross-dialect benchmark (50 parallel sentences, 78 sites, 8 subgroups); evaluation only.

Layout (``--corpus-dir`` is the ``scraped/`` directory)::

    <site_id>.json               {"site": <site name>, "subgrouping": ..., "sentences": {<utt_id>: {"transcript", "translation"}}}
    <site name>/<utt_id>.wav     (or only <utt_id>.mp4 beside it: converted once to <utt_id>.flac with ffmpeg)

The utterance id is ``<site_id>mb01yf<4-digit sentence number>``; the last 4 digits are the
``sentence_id`` shared across sites. Only sites in the site list (default: the benchmark's
``retrieval_sites.yaml``, shipped in ``data_prep/yubao_meta``) are prepared; a site's subgroup comes
from that list. Output: ``yubao_cuts_test.jsonl.gz`` with custom site, subgroup, sentence_id,
translation (Mandarin); missing/unreadable audio and short sites are listed in the report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml
from lhotse import CutSet

from data_prep.common import (YUBAO_SUBGROUP_LABELS, PrepReport, check_audio, make_cut, relabel_cuts, require_dir,
                              write_cuts)
from speechalign.data.manifest import load_cuts

META_DIR = Path(__file__).parent / "yubao_meta"
LAYOUT = """  scraped/<site_id>.json   {"site": ..., "subgrouping": ..., "sentences": {<utt_id>: {"transcript": ..., "translation": ...}}}
  scraped/<site name>/<utt_id>.wav   (an .mp4 beside it is converted with ffmpeg when the .wav is missing)"""
EXPECTED_SENTENCES = 50


def load_site_list(sites_yaml: str | Path | None = None) -> dict[str, str]:
    """site name -> subgroup."""
    data = yaml.safe_load(Path(sites_yaml or META_DIR / "retrieval_sites.yaml").read_text(encoding="utf-8"))
    return {site: group for group, sites in data.items() for site in sites}


def sentence_id(utt_id: str) -> str:
    digits = utt_id.split("-")[0][-4:]
    if not digits.isdigit():
        raise ValueError(f"yubao: utterance id {utt_id!r} does not end in a 4-digit sentence number")
    return digits


def mp4_to_flac(mp4: Path, ffmpeg: str = "ffmpeg") -> Path:
    """Extract 16 kHz mono FLAC beside the .mp4 (once); clear error when ffmpeg is missing."""
    flac = mp4.with_suffix(".flac")
    if flac.is_file() and flac.stat().st_size > 0:
        return flac
    if shutil.which(ffmpeg) is None:
        raise FileNotFoundError(f"yubao: {mp4} has no .wav and '{ffmpeg}' is not installed to convert it "
                                "(apt-get install ffmpeg)")
    tmp = flac.with_name(f".{flac.stem}.tmp.flac")
    proc = subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(mp4), "-vn", "-ac", "1",
                           "-ar", "16000", str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"ffmpeg could not convert {mp4}: {proc.stderr.strip()[:200]}")
    tmp.replace(flac)
    return flac


def prepare_yubao(corpus_dir: str | Path, output_dir: str | Path, sites_yaml: str | Path | None = None,
                  siteid_to_name: str | Path | None = None, ffmpeg: str = "ffmpeg") -> dict[str, CutSet]:
    corpus_dir = require_dir(corpus_dir, "yubao", LAYOUT)
    site_group = load_site_list(sites_yaml)
    id_to_name = json.loads(Path(siteid_to_name or META_DIR / "siteid_to_name.json").read_text(encoding="utf-8"))
    metas = sorted(corpus_dir.glob("*.json"))
    if not metas:
        raise FileNotFoundError(f"yubao: no <site_id>.json in {corpus_dir}; expected layout:\n{LAYOUT}")
    report, cuts, seen_sites = PrepReport("yubao"), [], set()
    for meta_path in metas:
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            site, sentences = meta["site"], meta["sentences"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            report.skip(meta_path, f"bad-metadata: {e.__class__.__name__}: {e}")
            continue
        site = site or id_to_name.get(meta_path.stem, "")
        if site not in site_group:
            report.note(f"{meta_path.name}: site {site!r} is not in the site list; ignored")
            continue
        seen_sites.add(site)
        group = site_group[site]
        kept = 0
        for utt_id, entry in sorted(sentences.items()):
            wav = corpus_dir / site / f"{utt_id}.wav"
            if not wav.is_file() and (corpus_dir / site / f"{utt_id}.mp4").is_file():
                try:
                    wav = mp4_to_flac(corpus_dir / site / f"{utt_id}.mp4", ffmpeg)
                except ValueError as e:
                    report.skip(corpus_dir / site / f"{utt_id}.mp4", f"unreadable: {e}")
                    continue
            recording = check_audio(wav, report, recording_id=utt_id)
            if recording is None:
                continue
            cut = make_cut(recording, entry.get("transcript") or "", YUBAO_SUBGROUP_LABELS[group], report,
                           speaker=site, site=site, subgroup=group, sentence_id=sentence_id(utt_id),
                           translation=entry.get("translation"))
            if cut is not None:
                cuts.append(cut)
                kept += 1
        if kept < EXPECTED_SENTENCES:
            report.note(f"site {site} ({group}): {kept} of {EXPECTED_SENTENCES} sentences")
    for site in sorted(set(site_group) - seen_sites):
        report.note(f"site {site} ({site_group[site]}) is in the site list but has no <site_id>.json")
    write_cuts(cuts, output_dir, "yubao", "test")
    report.kept["test"] = len(cuts)
    report.write(output_dir)
    return {"test": CutSet.from_cuts(cuts)}


def prepare_yubao_from_cuts(cut_paths: list[str | Path], output_dir: str | Path) -> dict[str, CutSet]:
    """Convert per-subgroup manifests made by the benchmark's reference scripts (supervision custom
    ``city`` and ``subgrouping``) to speechalign's conventions."""
    report, cuts = PrepReport("yubao"), []
    for path in cut_paths:
        for cut in load_cuts(path):
            custom = (cut.supervisions[0].custom or {}) if cut.supervisions else {}
            if "city" not in custom or "subgrouping" not in custom:
                raise ValueError(f"{path}: cut {cut.id} lacks supervision custom 'city'/'subgrouping' "
                                 "(expected a manifest from the YuBao reference scripts)")
            cuts.append(cut)
    groups = {c.id: c.supervisions[0].custom["subgrouping"] for c in cuts}
    unknown = sorted(set(groups.values()) - set(YUBAO_SUBGROUP_LABELS))
    if unknown:
        raise ValueError(f"yubao: unknown subgrouping(s) {unknown}; expected {sorted(YUBAO_SUBGROUP_LABELS)}")
    cuts = relabel_cuts(cuts, lambda c: YUBAO_SUBGROUP_LABELS[groups[c.id]], report,
                        site=lambda c: c.supervisions[0].custom["city"], subgroup=lambda c: groups[c.id],
                        sentence_id=lambda c: sentence_id(c.recording_id))
    write_cuts(cuts, output_dir, "yubao", "test")
    report.kept["test"] = len(cuts)
    report.write(output_dir)
    return {"test": CutSet.from_cuts(cuts)}


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("yubao", help="YuBao benchmark (scraped/ layout or the reference scripts' manifests)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus-dir", type=Path, help="the scraped/ directory")
    src.add_argument("--from-cuts", type=Path, nargs="+", help="per-subgroup manifests of the reference scripts")
    p.add_argument("--output-dir", required=True, type=Path, help="where manifests and the prep report are written")
    p.add_argument("--sites-yaml", type=Path, help="subgroup -> sites (default: the benchmark's list)")
    p.add_argument("--siteid-to-name", type=Path, help="site id -> name JSON (default: the benchmark's)")
    p.add_argument("--ffmpeg", default="ffmpeg", help="ffmpeg executable converting .mp4 recordings to FLAC")
    p.set_defaults(func=lambda a: prepare_yubao_from_cuts(a.from_cuts, a.output_dir) if a.from_cuts else
                   prepare_yubao(a.corpus_dir, a.output_dir, a.sites_yaml, a.siteid_to_name, a.ffmpeg))
