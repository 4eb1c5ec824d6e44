"""When a variable-frame-rate source shows each frame, and how the output shows them at the same times.

y4m gives every frame the clip's constant rate. For a source whose frames are not evenly spaced
(phone recordings, screen captures, mixed 24/30 fps edits), ``FrameTimes`` holds the source's
presentation times, read from its packets, and ``ffmpeg_filter`` retimes the piped frames: a
``sendcmd`` file sets ``setpts`` once per run of equal durations, in the source's own time base,
so the output's timestamps are the source's.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from edvr_vs.ffmpeg import ffmpeg_exe, filter_path
from edvr_vs.os_support import TEXT


@dataclass(frozen=True)
class FrameTimes:
    """Presentation times of a source's frames: ``pts[n]`` ticks of ``time_base`` after frame 0."""

    time_base: Fraction
    pts: tuple[int, ...]

    def seconds(self, n: int) -> Fraction:
        """When frame ``n`` is shown, after frame 0; ``n`` = the frame count gives the end of the last one."""
        if n < len(self.pts):
            return self.pts[n] * self.time_base
        last = self.pts[-1] - self.pts[-2] if len(self.pts) > 1 else 1
        return (self.pts[-1] + last) * self.time_base

    def ffmpeg_filter(self, first: int, count: int, start_ticks: int, commands: Path) -> str:
        """A filter chain that gives the piped frames ``first`` … ``first + count − 1`` of the source
        their times, frame ``first`` at ``start_ticks``; writes the commands it reads to ``commands`` (any
        path: ``edvr_vs.ffmpeg.filter_path`` escapes it)."""
        runs = []
        step = None
        for i in range(count):
            n = first + i
            duration = self.pts[n + 1] - self.pts[n] if n + 1 < len(self.pts) else step
            if i == 0 or duration != step:  # a run of equal durations starts at piped frame i
                runs.append((i, f"{start_ticks + self.pts[n] - self.pts[first]}+(N-{i})*{duration or 0}"))
                step = duration
        # Piped frame i reaches sendcmd at i seconds; the named setpts then gives it its time.
        text = "".join(f"{i}-{i + 1} [enter] setpts@retime expr '{expr}';\n" for i, expr in runs)
        commands.write_text(text, encoding="utf-8")
        tb = self.time_base
        return (f"settb={tb.numerator}/{tb.denominator},setpts=N/TB,sendcmd=f={filter_path(commands)},"
                f"setpts@retime={runs[0][1]}:strip_fps=1")


# What ffmpeg's demuxers say, at warning level, when a file ends before its own structure does.
DAMAGE = ("file ended prematurely", "partial file", "corrupt input packet", "truncat", "invalid data found",
          "moov atom not found", "error reading header")


class DamagedSource(Exception):
    """A source whose video packets end before its container says they do; the message says where."""


def read_frame_times(path: str, frames: int, fps: Fraction) -> FrameTimes | None:
    """The presentation times of the file's first video stream, if its ``frames`` frames are not
    shown at a constant ``fps`` (within one tick); None for a constant rate, or when its packets do
    not match the frames one to one. Reading every packet also finds a truncated or damaged file
    (DamagedSource): a decoder would give only the frames before the damage, silently."""
    res = subprocess.run([ffmpeg_exe(), "-v", "warning", "-nostdin", "-i", path, "-map", "0:v:0", "-c", "copy",
                          "-f", "framecrc", "-"], capture_output=True, timeout=3600, **TEXT)
    damage = [re.sub(r"^\[[^]]+\] ", "", line) for line in res.stderr.splitlines() if any(d in line.lower() for d in DAMAGE)]
    if damage:
        raise DamagedSource(f"{'; '.join(dict.fromkeys(damage))} (frames readable: {frames})")
    tb = re.search(r"^#tb 0: (\d+)/(\d+)", res.stdout, re.M)
    if res.returncode != 0 or not tb:
        return None
    pts = sorted(int(m) for m in re.findall(r"^0,\s*-?\d+,\s*(-?\d+),", res.stdout, re.M))
    if len(pts) != frames or frames < 2:
        return None
    time_base = Fraction(int(tb[1]), int(tb[2]))
    times = FrameTimes(time_base, tuple(p - pts[0] for p in pts))
    constant = all(abs(times.seconds(n) - n / fps) <= time_base for n in range(frames))
    return None if constant else times
