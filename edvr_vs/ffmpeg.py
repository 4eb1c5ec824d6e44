"""ffmpeg itself: where it is, and the error every media step raises.

``ffmpeg_exe`` is ffmpeg from ``PATH``, else the binary in the imageio-ffmpeg wheel. ``MediaError``
is a file that cannot be read or written, or a missing tool; its message says which. ``filter_path``
puts a file name into a filter's option.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import PurePath


class MediaError(RuntimeError):
    """A file that cannot be read or written, or a missing tool; the message says which."""


def ffmpeg_exe() -> str:
    """ffmpeg from PATH, else the binary shipped in the imageio-ffmpeg wheel."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise MediaError(f"no ffmpeg found on PATH and imageio-ffmpeg has none ({e}); install ffmpeg") from None


def filter_path(path: str | os.PathLike[str]) -> str:
    """``path`` as the value of a filter option inside a ``-vf`` chain (e.g. ``sendcmd=f=...``), escaped
    for both of ffmpeg's parsers: the option's (``\\ ' :``) and then the filter graph's (``\\ ' [ ] , ;``).
    Windows' separators become ``/`` (which Windows accepts) and a drive's colon is escaped, so
    ``C:\\Users\\O'Brien\\t.cmd`` reaches the filter as written."""
    text = PurePath(path).as_posix()
    option = re.sub(r"([\\':])", r"\\\1", text)
    return re.sub(r"([\\'\[\],;])", r"\\\1", option)
