"""The source's streams besides its video (audio, subtitles, attachments, data), its chapters and
global metadata, carried into the output beside the restored video.

``plan`` asks ffmpeg, by a trial mux into the output's container, what that container takes: each
stream is copied where it can be, converted by the container's default encoder where only that
works (say, SubRip → mov_text in MP4, AAC → Opus in WebM), and left out otherwise; every conversion
or omission is a line in ``Passthrough.notes``. For a frame range the streams are cut to the range's
time span (copies start at the first packet at or after it: within one audio frame, ~20 ms).

Timing: ffmpeg starts each input at its own first timestamp, so the restored video gets the offset
of the source's first frame from the file's start (say, video starting 80 ms after the audio),
which keeps the two in sync.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from edvr_vs.ffmpeg import MediaError, ffmpeg_exe
from edvr_vs.os_support import TEXT

KINDS = ("Audio", "Subtitle", "Attachment", "Data")
# What to try, in order, for a stream the container cannot take as it is (None: the container's default
# encoder; MP4's has none for subtitles, WebM's text format is WebVTT).
CONVERSIONS: dict[str, tuple[str | None, ...]] = {"Audio": (None,), "Subtitle": (None, "mov_text", "webvtt")}
_STREAM = re.compile(r"^\s*Stream #0:(\d+)(?:\[\w+\])?(?:\((\w+)\))?: (\w+): (\w+)", re.M)
# ffmpeg's stream mapping line, "Stream #0:2 -> #0:0 (subrip (srt) -> mov_text (native))": source index, encoder
_MAPPED = re.compile(r"Stream #0:(\d+) -> #0:\d+ \(\S+ (?:\([^)]*\) )?-> (\S+) \(")


@dataclass(frozen=True)
class SourceStream:
    index: int  # in the source file
    kind: str  # one of KINDS
    codec: str
    language: str | None

    def describe(self) -> str:
        lang = f", {self.language}" if self.language and self.language != "und" else ""
        return f"{self.kind.lower()} stream {self.index} ({self.codec}{lang})"


@dataclass(frozen=True)
class Passthrough:
    """How the source's other streams go into one output: ffmpeg arguments for the source as the
    second input, the restored video's offset, and what was converted or left out."""

    path: str
    start: Fraction | None  # seconds into the source (after its first timestamp) where the output starts
    duration: Fraction | None  # seconds of the source the output covers; None: to the end
    video_offset: Fraction  # where the restored video starts in the output, seconds
    codecs: tuple[tuple[int, str], ...]  # (source stream index, "copy" or an encoder), in output order
    chapters: bool
    notes: tuple[str, ...]

    def video_input_args(self) -> list[str]:
        """Input options for the restored video (input 0)."""
        return ["-itsoffset", _seconds(self.video_offset)] if self.video_offset else []

    def input_args(self) -> list[str]:
        """The source as input 1, cut to the output's span."""
        return [*_span(self.start, self.duration), "-i", self.path]

    def output_args(self) -> list[str]:
        """Maps and codecs for input 1's streams (after the video, output stream 0), chapters and metadata."""
        args = []
        for k, (index, codec) in enumerate(self.codecs, start=1):
            args += ["-map", f"1:{index}", f"-c:{k}", codec]
            if self.start:  # copies would otherwise begin at the key frame the seek landed on
                args += [f"-copypriorss:{k}", "0"]
        return [*args, "-map_chapters", "1" if self.chapters else "-1", "-map_metadata", "1"]


def _seconds(value: Fraction) -> str:
    return f"{float(value):.6f}"


def _span(start: Fraction | None, duration: Fraction | None) -> list[str]:
    return [*(["-ss", _seconds(start)] if start else []), *(["-t", _seconds(duration)] if duration else [])]


def _ffmpeg(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args], capture_output=True, timeout=timeout,
                          **TEXT)


def source_streams(path: str) -> tuple[list[SourceStream], bool]:
    """The file's streams other than video, and whether it has chapters (from ffmpeg's description)."""
    text = _ffmpeg(["-i", path]).stderr
    streams = [SourceStream(int(i), kind, codec, lang) for i, lang, kind, codec in _STREAM.findall(text)
               if kind in KINDS]
    return streams, bool(re.search(r"^\s*Chapters?:", text, re.M))


def first_frame_offset(path: str) -> Fraction:
    """Seconds from the file's start (its first timestamp) to its first video frame."""
    res = _ffmpeg(["-v", "error", "-i", path, "-map", "0:v:0", "-frames:v", "1", "-f", "framemd5", "-"])
    tb = re.search(r"^#tb 0: (\d+)/(\d+)", res.stdout, re.M)
    frame = re.search(r"^0,\s*-?\d+,\s*(-?\d+),", res.stdout, re.M)
    if res.returncode != 0 or not tb or not frame:
        raise MediaError(f"cannot read the first video frame's time of {path!r}: {res.stderr.strip()[-300:]}")
    return max(Fraction(0), int(frame[1]) * Fraction(int(tb[1]), int(tb[2])))


def _trial(path: str, suffix: str, streams: list[tuple[int, str | None]], chapters: bool
           ) -> subprocess.CompletedProcess:
    """Mux a moment of ``streams`` ((index, "copy" / None for the container's default encoder)) into
    a scratch file of the output's container."""
    args = ["-v", "info", "-t", "0.2", "-i", path]
    for k, (index, codec) in enumerate(streams):
        args += ["-map", f"0:{index}", *([f"-c:{k}", codec] if codec else [])]
    with tempfile.TemporaryDirectory(prefix="edvr_vs-trial-") as tmp:
        return _ffmpeg([*args, "-map_chapters", "0" if chapters else "-1", "-y", str(Path(tmp) / f"trial{suffix}")])


def _default_encoder(log: str, index: int) -> str | None:
    return next((m[2] for m in _MAPPED.finditer(log) if int(m[1]) == index), None)


def _conversion(path: str, suffix: str, stream: SourceStream) -> str | None:
    """The first encoder of ``CONVERSIONS`` that puts ``stream`` into the container, or None."""
    for candidate in CONVERSIONS.get(stream.kind, ()):
        res = _trial(path, suffix, [(stream.index, candidate)], False)
        if res.returncode == 0:
            return candidate or _default_encoder(res.stderr, stream.index)
    return None


def plan(path: str, output: Path, start: Fraction | None = None, duration: Fraction | None = None) -> Passthrough:
    """What of ``path`` besides its video goes into ``output`` (its suffix picks the container), for
    the span ``start`` … ``start + duration`` seconds of the source's video (None: all of it)."""
    streams, chapters = source_streams(path)
    offset = first_frame_offset(path)
    suffix = Path(output).suffix or ".mkv"
    codecs: list[tuple[int, str]] = []
    notes: list[str] = []
    if streams and _trial(path, suffix, [(s.index, "copy") for s in streams], chapters).returncode == 0:
        codecs = [(s.index, "copy") for s in streams]
    else:
        for s in streams:
            if _trial(path, suffix, [(s.index, "copy")], False).returncode == 0:
                codecs.append((s.index, "copy"))
                continue
            encoder = _conversion(path, suffix, s)
            if encoder:
                codecs.append((s.index, encoder))
                notes.append(f"{s.describe()} cannot be copied into {suffix}; re-encoded as {encoder}")
            else:
                notes.append(f"{s.describe()} cannot go into {suffix}; left out (a .mkv output keeps it)")
    if start is not None:  # a range: its span of the source, and the video at the output's start
        return Passthrough(path, offset + start, duration, Fraction(0), tuple(codecs), chapters, tuple(notes))
    return Passthrough(path, None, None, offset, tuple(codecs), chapters, tuple(notes))
