"""Media plumbing shared by the CLI, training and the scripts: ffmpeg, sources, encoding, frames.

- ``open_source``: any video file through a VapourSynth source plugin from PyPI.
- ``encode``: a clip piped as y4m into ffmpeg, into a file that appears only when complete.
- ``concat``: encoded segments joined without re-encoding, with the source's other streams.
- ``read_video`` / ``read_images``: frames as uint8 RGB arrays (t, h, w, 3).

Failures raise ``MediaError`` with a message that names the file or the tool.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING
from fractions import Fraction
from pathlib import Path

import numpy as np
import vapoursynth as vs

from edvr_vs.colour import default_matrix
from edvr_vs.ffmpeg import MediaError, ffmpeg_exe
from edvr_vs.files import atomic_output, partial_name
from edvr_vs.frame_io import frame_tensor
from edvr_vs.os_support import TEXT, ended, own_group, say, stop_process
from edvr_vs.video_tags import VideoTags

if TYPE_CHECKING:
    from edvr_vs.passthrough import Passthrough
    from edvr_vs.timestamps import FrameTimes

core = vs.core

ENCODERS = {"x265": "libx265", "x264": "libx264", "ffv1": "ffv1", "av1": "libsvtav1", "vp9": "libvpx-vp9"}
DEFAULT_ENCODER_ARGS = {"libx265": ["-crf", "18", "-preset", "medium"], "libx264": ["-crf", "16", "-preset", "medium"],
                        "ffv1": ["-level", "3"]}


def open_source(path: str | os.PathLike[str]) -> vs.VideoNode:
    """Any video file through a VapourSynth source plugin from PyPI (bestsource, else lsmas)."""
    path = os.fspath(path)
    try:
        os.stat(path)
    except FileNotFoundError:
        raise MediaError(f"input {path!r} does not exist") from None
    except OSError as e:
        raise MediaError(f"input {path!r} cannot be read ({e.strerror.lower()})") from None
    if not os.path.isfile(path):
        raise MediaError(f"input {path!r} is {'a directory' if os.path.isdir(path) else 'not a regular file'}, "
                         "not a video file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"input {path!r} cannot be read (permission denied)")
    if os.path.getsize(path) == 0:
        raise MediaError(f"input {path!r} is empty (0 bytes)")
    errors = []
    if hasattr(core, "bs"):
        try:
            return core.bs.VideoSource(path)
        except vs.Error as e:
            errors.append(f"bestsource: {e}")
    if hasattr(core, "lsmas"):
        try:
            return core.lsmas.LWLibavSource(path, cachefile=os.path.join(tempfile.gettempdir(), "edvr_vs.lwi"))
        except vs.Error as e:
            errors.append(f"lsmas: {e}")
    if not errors:
        raise MediaError("no source plugin: pip install vapoursynth-bestsource (or vapoursynth-lsmas)")
    raise MediaError(f"cannot read {path!r} as video (not a video file, or damaged): {'; '.join(errors)}")


def fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(total: int) -> Callable[[int, int], None]:
    """A progress callback that rewrites one stderr line: frames done of ``total``, fps, ETA."""
    t0 = time.monotonic()

    def show(done: int, _total: int) -> None:
        elapsed = time.monotonic() - t0
        fps = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / fps if fps > 0 else 0.0
        say(f"\redvr-vs: {done}/{total} frames, {fps:.2f} fps, ETA {fmt_time(eta)} ")

    return show


def _reason(log: IO[bytes], count: int = 2) -> str:
    """ffmpeg's first messages (the cause; later ones are its threads shutting down), without their
    ``[component @ 0x...]`` prefixes."""
    log.seek(0)
    lines = [re.sub(r"^\[[^]]+ @ 0x[0-9a-f]+\] ", "", line.strip())
             for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return "; ".join(lines[:count]) or "no message"


def check_output(output: Path) -> None:
    """The output's folder exists and takes a file (a hidden one, created and removed at once)."""
    output = Path(output)
    folder = output.resolve().parent
    if not folder.is_dir():
        raise MediaError(f"cannot write {output}: the folder {folder} does not exist")
    probe = folder / partial_name(output, f"{os.getpid()}-probe")
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise MediaError(f"cannot write {output}: {e.strerror or e}") from None


def _run_ffmpeg(cmd: list[str], output: Path, what: str, feed: Callable[[subprocess.Popen], None] | None = None
                ) -> None:
    """Run ffmpeg with ``cmd`` and a temporary output path beside ``output``, renamed to ``output`` when
    ffmpeg succeeds; ``feed`` writes its stdin. On any failure or interruption ffmpeg is killed and
    nothing is left behind; when ffmpeg fails, MediaError carries its first messages."""
    with atomic_output(output) as tmp, tempfile.TemporaryFile() as log:
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *cmd, str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log, **own_group())
        try:
            if feed:
                try:
                    feed(proc)
                except (OSError, vs.Error):  # a closed pipe when ffmpeg gave up (EPIPE; EINVAL on Windows)
                    try:
                        gave_up = proc.wait(timeout=5) != 0
                    except subprocess.TimeoutExpired:
                        gave_up = False
                    if gave_up:
                        raise MediaError(f"ffmpeg ({what}) {ended(proc.returncode)}: {_reason(log)}") from None
                    raise
                finally:
                    with contextlib.suppress(OSError):  # ffmpeg gone: its exit status tells why
                        proc.stdin.close()
            rc = proc.wait()
            if rc != 0:
                raise MediaError(f"ffmpeg ({what}) {ended(rc)}: {_reason(log)}")
        except BaseException:
            stop_process(proc)
            raise


def check_encoding(clip: vs.VideoNode, output: Path, encoder: str, extra: list[str]) -> None:
    """Encode one blank frame of ``clip``'s format and size as ``encode`` would, into a scratch file of
    ``output``'s container, before any real work: MediaError with ffmpeg's reason when the encoder, its
    arguments or the container refuse."""
    with tempfile.TemporaryDirectory(prefix="edvr_vs-check-") as tmp:
        try:
            encode(core.std.BlankClip(clip, length=1), Path(tmp) / f"check{Path(output).suffix}", encoder, extra,
                   tags=VideoTags(), progress=lambda *_: None)
        except MediaError as e:
            reason = str(e).split(": ", 1)[-1]
            raise MediaError(f"--encoder {encoder}{' with ' + ' '.join(extra) if extra else ''} cannot write "
                             f"{Path(output).name}: {reason}") from None


def _video_args(filters: list[str], tags: VideoTags, extra: list[str]) -> list[str]:
    """``extra`` with ``filters`` and the labels of ``tags`` first (before a ``-vf`` chain of the user's)."""
    chain = ",".join(f for f in (*filters, tags.ffmpeg_filter()) if f)
    out = list(extra)
    if chain:
        for i, arg in enumerate(out[:-1]):
            if arg in ("-vf", "-filter:v", "-filter:v:0"):
                out[i + 1] = f"{chain},{out[i + 1]}"
                break
        else:
            out = ["-vf", chain, *out]
    if "-color_range" not in out:
        out += tags.ffmpeg_output_args()
    return out


def _streams_args(video_input: list[str], passthrough: Passthrough | None, retimed: bool = False) -> list[str]:
    """Inputs and maps: the restored video as input 0 (``video_input``; ``retimed``: its timestamps come
    from a filter, offset included), the source's other streams as input 1."""
    if passthrough is None:
        return [*video_input, "-map", "0:v"]
    return [*([] if retimed else passthrough.video_input_args()), *video_input, *passthrough.input_args(),
            "-map", "0:v", *passthrough.output_args()]


def encode(clip: vs.VideoNode, output: Path, encoder: str, extra: list[str], tags: VideoTags | None = None,
           passthrough: Passthrough | None = None, times: FrameTimes | None = None, first: int = 0,
           progress: Callable[[int, int], None] | None = None) -> None:
    """Pipe ``clip`` as y4m into ffmpeg with ``encoder`` (a name of ``ENCODERS`` or any ffmpeg encoder) and
    ``extra`` arguments (default: ``DEFAULT_ENCODER_ARGS``); the video is tagged with ``tags`` (the
    clip's picture as its source describes it; default: frame 0's props), the source's other streams
    come in as ``passthrough`` plans, and a variable-rate source's frame ``times`` (``clip`` being its
    frames from ``first`` on) become the output's timestamps; ``progress`` (default: a line on stderr)
    is called with (frames done, total). The result appears under ``output`` only when complete; on
    any failure or interruption nothing is left behind and ffmpeg is killed."""
    tags = tags or VideoTags.of(clip)
    if clip.format.color_family == vs.RGB:
        clip = core.resize.Bicubic(clip, format=vs.YUV444P10, matrix=1)
        tags = tags.converted(matrix=1, full_range=False, subsampled=False)
    codec = ENCODERS.get(encoder, encoder)
    show = progress or progress_line(clip.num_frames)

    def feed(proc: subprocess.Popen) -> None:
        clip.output(proc.stdin, y4m=True, progress_update=show)

    with tempfile.TemporaryDirectory(prefix="edvr_vs-encode-") as tmp:
        filters, timing = [], []
        if times is not None:
            offset = passthrough.video_offset if passthrough else Fraction(0)
            filters.append(times.ffmpeg_filter(first, clip.num_frames, round(offset / times.time_base),
                                               Path(tmp) / "times.cmd"))
            timing = ["-fps_mode", "passthrough", "-enc_time_base", "filter"]
        cmd = [*_streams_args(["-f", "yuv4mpegpipe", "-i", "-"], passthrough, retimed=times is not None),
               "-c:v", codec, *timing, *_video_args(filters, tags, extra or DEFAULT_ENCODER_ARGS.get(codec, []))]
        try:
            _run_ffmpeg(cmd, Path(output), codec, feed)
        finally:
            if progress is None:
                say("\n")


def concat(segments: list[Path], output: Path, durations: list[Fraction], tags: VideoTags | None = None,
           passthrough: Passthrough | None = None) -> None:
    """Join encoded ``segments`` (same codec and settings, each starting with a key frame; ``durations``
    in seconds) into ``output`` without re-encoding, described by ``tags`` (segment formats such as NUT
    drop the colour description), with the source's other streams as ``passthrough`` plans; the file
    appears only when complete. Each segment starts where the durations before it end,
    rounded once to the microsecond, so timestamps come out as those of one encode (segments in NUT
    keep a time base in which every frame is a whole number of ticks)."""
    lines, end = [], Fraction(0)
    for seg, duration in zip(segments, durations, strict=True):
        start, end = end, end + duration
        micros = round(end * 1_000_000) - round(start * 1_000_000)
        quoted = str(Path(seg).resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'\nduration {micros // 1_000_000}.{micros % 1_000_000:06d}\n")
    with tempfile.TemporaryDirectory(prefix="edvr_vs-concat-") as tmp:
        listing = Path(tmp) / "segments.txt"
        listing.write_text("".join(lines), encoding="utf-8")  # ffmpeg reads it as UTF-8 on every OS
        cmd = [*_streams_args(["-f", "concat", "-safe", "0", "-i", str(listing)], passthrough), "-c:v", "copy",
               *(tags.ffmpeg_copy_args() if tags else [])]
        _run_ffmpeg(cmd, Path(output), "concat")


def read_video(path: Path, max_frames: int | None = None) -> np.ndarray:
    """A video file's frames as uint8 RGB (t, h, w, 3), through VapourSynth (zimg bicubic; an unspecified
    matrix is ``edvr_vs.colour.default_matrix``)."""
    clip = open_source(path)
    if max_frames:
        clip = clip[:max_frames]
    rgb = core.resize.Bicubic(clip, format=vs.RGB24, matrix_in=default_matrix(clip.width, clip.height))
    return np.stack([frame_tensor(f, None).permute(1, 2, 0).numpy() for f in rgb.frames()])


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, from ffmpeg's stream description."""
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, **TEXT)
    m = re.search(r"Video: .*?(\d{1,5})x(\d{1,5})", res.stderr)
    if not m:
        raise MediaError(f"cannot read the image size of {path}")
    return int(m[1]), int(m[2])


def read_images(paths: list[Path]) -> np.ndarray:
    """Same-size images as uint8 RGB (t, h, w, 3), decoded by ffmpeg."""
    w, h = image_size(paths[0])
    frames = []
    for p in paths:
        raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(p), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                             capture_output=True, check=True).stdout
        if len(raw) != w * h * 3:
            raise MediaError(f"{p} is not {w}x{h} like {paths[0]}")
        frames.append(np.frombuffer(raw, np.uint8).reshape(h, w, 3))
    return np.stack(frames)
