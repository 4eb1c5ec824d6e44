"""ffmpeg itself: where it is, and the error every media step raises.

``ffmpeg_exe`` is ffmpeg from ``PATH``, else the binary in the imageio-ffmpeg wheel. ``MediaError``
is a file that cannot be read or written, or a missing tool; its message says which.
"""

from __future__ import annotations

import shutil


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
