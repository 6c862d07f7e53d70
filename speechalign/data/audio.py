"""Decoding MP3 files without the decoder library's ID3 chatter.

soundfile's libsndfile decodes MP3 with a bundled libmpg123 that prints complaints about ID3 tags to the
process's stderr (``[src/libmpg123/id3.c:process_comment():587] error: No comment text / valid
description?``) on every open of such a file. The audio is fine; the tag is not. Neither libsndfile
nor soundfile offers a way to make that decoder quiet (libmpg123's own MPG123_QUIET is not reachable
through them), so :func:`quiet_id3` catches file descriptor 2 around the decode call and writes back
everything except those ID3 lines: other C-level messages and Python output stay visible, and Python
exceptions propagate unchanged.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_ID3_CHATTER = re.compile(rb"^\[src/libmpg123/id3\.c:[^\n]*(\n|$)", re.MULTILINE)


def is_mp3(path: str | Path) -> bool:
    return str(path).lower().endswith(".mp3")


@contextmanager
def quiet_id3(path: str | Path) -> Iterator[None]:
    """Decode ``path`` inside this block: for an MP3, libmpg123's ID3 lines are dropped from stderr;
    anything else is a no-op."""
    if not is_mp3(path):
        yield
        return
    try:
        _flush_stderr()
        saved = os.dup(2)
    except OSError:   # no usable file descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            _write_fd2(_ID3_CHATTER.sub(b"", caught.read()))


def _flush_stderr() -> None:
    if sys.stderr is not None:
        sys.stderr.flush()


def _write_fd2(data: bytes) -> None:
    while data:
        data = data[os.write(2, data):]
