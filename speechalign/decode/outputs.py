"""A recording's timed segments written as TXT, TSV, SRT, WebVTT or JSON (``transcribe --output-format``).

TSV has a header (``start end text``, seconds with millisecond precision); SRT and WebVTT number or time
each cue as players expect; JSON holds the recording's text, its segments and how they were made. Segments
without text are left out of TXT, SRT and WebVTT (a cue needs text) and kept in TSV and JSON.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from speechalign.atomic import write_text
from speechalign.decode.longform import Segment

FORMATS = ("txt", "tsv", "srt", "vtt", "json")


def clock(seconds: float, decimal: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def render(segments: list[Segment], fmt: str, meta: dict | None = None) -> str:
    spoken = [s for s in segments if s.text]
    if fmt == "txt":
        return "".join(f"{s.text}\n" for s in spoken)
    if fmt == "tsv":
        return "start\tend\ttext\n" + "".join(f"{s.start:.3f}\t{s.end:.3f}\t{s.text}\n" for s in segments)
    if fmt == "srt":
        return "\n".join(f"{i}\n{clock(s.start, ',')} --> {clock(s.end, ',')}\n{s.text}\n"
                         for i, s in enumerate(spoken, 1))
    if fmt == "vtt":
        # WebVTT cue text is markup: a literal <, > or & (a model's <unk>) is written as an entity
        return "WEBVTT\n\n" + "\n".join(f"{clock(s.start, '.')} --> {clock(s.end, '.')}\n{html.escape(s.text, quote=False)}\n"
                                         for s in spoken)
    if fmt == "json":
        doc = {**(meta or {}), "text": "".join(s.text for s in segments),
               "segments": [{"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text} for s in segments]}
        return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    raise ValueError(f"--output-format: unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def write_outputs(segments: list[Segment], audio: Path, out_dir: Path, formats: list[str],
                  meta: dict | None = None) -> list[Path]:
    """``<out_dir>/<audio stem>.<fmt>`` for each format, written atomically; returns the paths."""
    paths = []
    for fmt in formats:
        path = Path(out_dir) / f"{Path(audio).stem}.{fmt}"
        write_text(path, render(segments, fmt, {"audio": str(audio), **(meta or {})}))
        paths.append(path)
    return paths
