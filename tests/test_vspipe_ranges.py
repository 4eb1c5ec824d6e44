"""Av1an-style chunking: ``vspipe -s A -e B`` on a script using ``edvr_vs.edvr`` gives exactly frames
A…B of a whole run, at clip edges, across scene cuts and inside long scenes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.media_checks import CUT_CLIP_FRAMES, make_cut_clip

VSPIPE = Path(sys.executable).with_name("vspipe")
SCRIPT = """
import vapoursynth as vs
import edvr_vs
from edvr_vs.scenes import mark_cuts

core = vs.core
clip = mark_cuts(core.bs.VideoSource({clip!r}))
edvr_vs.edvr(clip, weights={weights!r}, device="cpu").set_output()
"""


def y4m_frames(data: bytes) -> list[bytes]:
    """The frames of a y4m stream (4:2:0, 8-bit), each as its raw planes."""
    header, rest = data.split(b"\n", 1)
    fields = {f[:1]: f[1:] for f in header.split()[1:]}
    size = int(fields[b"W"]) * int(fields[b"H"]) * 3 // 2
    frames = []
    while rest:
        tag, rest = rest.split(b"\n", 1)
        assert tag.startswith(b"FRAME")
        frames.append(rest[:size])
        rest = rest[size:]
    return frames


def test_vspipe_ranges_equal_a_whole_run(tmp_path, tiny_weights):
    clip = make_cut_clip(tmp_path / "cuts.mkv")
    script = tmp_path / "job.vpy"
    script.write_text(SCRIPT.format(clip=str(clip), weights=str(tiny_weights)))
    assert VSPIPE.exists(), "the vapoursynth wheel installs vspipe beside python"
    vspipe = str(VSPIPE)

    def frames(*args: str) -> list[bytes]:
        res = subprocess.run([vspipe, "-c", "y4m", str(script), "-", *args], capture_output=True, timeout=300)
        assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
        return y4m_frames(res.stdout)

    whole = frames()
    assert len(whole) == CUT_CLIP_FRAMES
    # the first frames, a cut inside the range (8), a range starting at a cut, one inside the 22-frame
    # scene, a single frame, and the last frames
    for a, b in [(0, 2), (6, 10), (8, 12), (15, 21), (29, 29), (37, 40)]:
        assert frames("-s", str(a), "-e", str(b)) == whole[a:b + 1], (a, b)
