"""The platform seam (edvr_vs.os_support) and the places that lean on it: locks, the cache directory,
exit statuses in words, replaces that a reader blocks, stderr that is None, paths the OS's way, ffmpeg
filter paths with a drive's colon and backslashes, the work folder's lock, and --cluster off Linux."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edvr_vs import os_support
from edvr_vs.files import atomic_output, write_text_atomic
from edvr_vs.os_support import ReplaceError, ended, exclusive_lock, is_broken_pipe, same_path


HOLD = ("import sys, time\nfrom edvr_vs.os_support import exclusive_lock\n"
        "with exclusive_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n")


def test_lock_excludes_other_processes_and_threads_and_dies_with_its_holder(tmp_path):
    path = str(tmp_path / "x.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(os_support.LockBusy):
            with exclusive_lock(path, wait=False):
                pass
    finally:
        holder.kill()  # killed while holding it: the OS drops the lock
        holder.wait(30)
    with exclusive_lock(path, wait=False):  # free now
        inner: list[str] = []

        def other_thread() -> None:
            try:
                with exclusive_lock(path, wait=False):
                    inner.append("got it")
            except os_support.LockBusy:
                inner.append("busy")

        t = threading.Thread(target=other_thread)
        t.start()
        t.join(10)
        assert inner == ["busy"]  # another thread of the same process is excluded too


def test_waiting_for_a_lock_calls_on_wait_once(tmp_path):
    path = tmp_path / "y.lock"
    waited: list[float] = []
    with exclusive_lock(path):
        def wait_for_it() -> None:
            with exclusive_lock(path, on_wait=lambda: waited.append(1)):
                waited.append(2)

        t = threading.Thread(target=wait_for_it)
        t.start()
        time.sleep(0.3)
        assert waited == [1] and t.is_alive()
    t.join(10)
    assert not t.is_alive() and waited == [1, 2]


def test_cache_dir_follows_the_os(monkeypatch, tmp_path):
    monkeypatch.setenv("EDVR_VS_HOME", str(tmp_path / "home"))
    assert os_support.cache_dir() == tmp_path / "home"
    monkeypatch.delenv("EDVR_VS_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert os_support.cache_dir() == tmp_path / "xdg" / "edvr_vs"  # Linux keeps $XDG_CACHE_HOME
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert os_support.cache_dir() == Path.home() / ".cache" / "edvr_vs"
    import platformdirs

    # What platformdirs gives elsewhere (its own per-OS classes, run here on their environment variables).
    monkeypatch.setenv("LOCALAPPDATA", r"C:\Users\Jöns\AppData\Local")
    from platformdirs.windows import Windows

    monkeypatch.setattr("platformdirs.windows.get_win_folder", lambda csidl: os.environ["LOCALAPPDATA"])
    assert Windows("edvr_vs", appauthor=False).user_cache_dir.replace("/", "\\") == \
        r"C:\Users\Jöns\AppData\Local\edvr_vs\Cache"
    from platformdirs.macos import MacOS

    assert MacOS("edvr_vs", appauthor=False).user_cache_dir == os.path.expanduser("~/Library/Caches/edvr_vs")
    assert platformdirs.user_cache_dir("edvr_vs", appauthor=False) == str(Path.home() / ".cache" / "edvr_vs")


def test_exit_statuses_in_words():
    assert ended(1) == "failed with exit code 1"
    assert ended(-signal.SIGSEGV) == "was killed by SIGSEGV (it crashed)"
    assert ended(-25) == "was killed by SIGXFSZ (the file size limit, ulimit -f, was reached)"
    assert ended(3221225477) == "crashed with an access violation 0xC0000005"  # Windows' crash, never negative
    assert ended(0xC0000409) == "crashed with a stack buffer overrun 0xC0000409"
    assert ended(0xC0001234) == "crashed with status 0xC0001234"


def test_broken_pipe_on_each_os(monkeypatch):
    assert is_broken_pipe(BrokenPipeError())
    einval = OSError(errno.EINVAL, "Invalid argument")
    assert not is_broken_pipe(einval)  # on Linux EINVAL is another error
    monkeypatch.setattr(os, "name", "nt")
    assert is_broken_pipe(einval)  # Windows' closed pipe
    assert not is_broken_pipe(OSError(errno.ENOSPC, "full"))


def _refuse(times: int, real=os.replace):
    calls = []

    def fake(src, dst):
        calls.append(src)
        if len(calls) <= times:
            raise PermissionError(errno.EACCES, "Access is denied")  # WinError 5 reads as this
        real(src, dst)

    return fake, calls


def test_a_replace_that_a_reader_blocks_is_retried(tmp_path, monkeypatch):
    fake, calls = _refuse(3)
    monkeypatch.setattr(os, "replace", fake)
    with atomic_output(tmp_path / "out.mkv") as tmp:
        tmp.write_bytes(b"finished")
    assert (tmp_path / "out.mkv").read_bytes() == b"finished" and len(calls) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["out.mkv"]


def test_a_replace_that_keeps_failing_keeps_the_finished_file(tmp_path, monkeypatch):
    fake, _ = _refuse(10 ** 6)
    monkeypatch.setattr(os, "replace", fake)
    monkeypatch.setattr(os_support, "REPLACE_WAIT_S", 0.3)
    (tmp_path / "out.mkv").write_bytes(b"old")
    with pytest.raises(ReplaceError) as err:
        with atomic_output(tmp_path / "out.mkv") as tmp:
            tmp.write_bytes(b"new")
    assert tmp.exists() and tmp.read_bytes() == b"new"  # the finished file is not deleted
    assert f"the finished file is kept as {tmp}" in str(err.value) and "another program may have it open" in str(err.value)
    assert (tmp_path / "out.mkv").read_bytes() == b"old"


def test_nothing_on_stderr_when_there_is_none(monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)
    os_support.say("no console\n")  # pythonw, VSEdit: no exception
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    os_support.say("a console\n")
    assert buf.getvalue() == "a console\n"


def test_zoo_download_progress_without_stderr(monkeypatch, tmp_path):
    """A download's progress and its "waiting" line under pythonw (sys.stderr None)."""
    from edvr_vs import zoo

    monkeypatch.setattr(sys, "stderr", None)
    bar = zoo._Progress("m", 100, 0, enabled=True)
    bar.update(50)
    bar.close()


def test_paths_compare_the_way_the_os_does(tmp_path, monkeypatch):
    (tmp_path / "Clip.mkv").write_bytes(b"x")
    (tmp_path / "link.mkv").symlink_to(tmp_path / "Clip.mkv")
    assert same_path(tmp_path / "Clip.mkv", tmp_path / "link.mkv")  # one file, through the file system
    assert not same_path(tmp_path / "Clip.mkv", tmp_path / "clip.mkv")  # Linux: case matters
    monkeypatch.setattr(os.path, "normcase", lambda p: os.fspath(p).lower().replace("/", "\\"))  # ntpath's rule
    assert same_path(tmp_path / "Clip.mkv", tmp_path / "CLIP.MKV")


def test_stop_signals_and_cpu_and_memory():
    assert signal.SIGINT in os_support.stop_signals() and signal.SIGTERM in os_support.stop_signals()
    name = os_support.cpu_name()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        assert name in f.read()
    assert 50 < os_support.peak_rss_mib() < 24 * 1024  # this process, torch imported: MiB, not KiB or bytes


def test_ru_maxrss_is_bytes_on_macos(monkeypatch):
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    monkeypatch.setattr(sys, "platform", "darwin")
    fake = type("Usage", (), {"ru_maxrss": kib * 1024})  # macOS reports the same peak in bytes
    monkeypatch.setattr(resource, "getrusage", lambda who: fake)
    assert abs(os_support.peak_rss_mib() - kib / 1024) < 1e-9


@pytest.mark.parametrize("folder", [r"C:\Users\O'Brien [x], y; z", "ввод 入力"])
def test_ffmpeg_reads_a_filter_file_under_any_path(tmp_path, folder):
    """The variable-frame-rate retiming reads its sendcmd file through ffmpeg's filter parsers: a folder
    named like a Windows path (drive colon, backslashes) with quotes and filter-graph specials works."""
    from edvr_vs.ffmpeg import ffmpeg_exe
    from edvr_vs.timestamps import FrameTimes

    where = tmp_path / folder
    where.mkdir()
    times = FrameTimes(__import__("fractions").Fraction(1, 1000), (0, 40, 80, 200, 240))
    chain = times.ffmpeg_filter(0, 5, 0, where / "times.cmd")
    res = subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=32x24:r=25:d=0.2",
                          "-vf", chain, "-f", "framecrc", "-"], capture_output=True, timeout=60, **os_support.TEXT)
    assert res.returncode == 0, res.stderr
    pts = [int(line.split(",")[2]) for line in res.stdout.splitlines() if line.startswith("0,")]
    assert pts == [0, 40, 80, 200, 240]


def test_work_folder_lock_is_released_before_its_file_is_removed(tmp_path, monkeypatch):
    from edvr_vs.cluster.manifest import WorkDir, WorkDirError

    work = WorkDir(tmp_path / "w")
    work.lock()
    with pytest.raises(WorkDirError, match="in use by another edvr-vs run"):
        WorkDir(tmp_path / "w").lock()
    order: list[str] = []
    real_remove = os_support.remove
    monkeypatch.setattr("edvr_vs.cluster.manifest.remove", lambda p: order.append("remove") or real_remove(p))
    stack_close = work._lock.close
    monkeypatch.setattr(work._lock, "close", lambda: order.append("release") or stack_close())
    work.release(remove_folder=True)
    assert order == ["release", "remove"] and not (tmp_path / "w").exists()


def test_a_partial_segment_held_open_is_removed_later(tmp_path, monkeypatch):
    from edvr_vs.chunks import Chunk
    from edvr_vs.cluster.manifest import WorkDir

    work = WorkDir(tmp_path)
    chunk = Chunk(index=3, start=0, stop=10, context=0)
    held = tmp_path / ".chunk-00003.partial-777.nut"
    held.write_bytes(b"half")
    real_remove = os_support.remove
    monkeypatch.setattr("edvr_vs.cluster.manifest.remove", lambda p: False)  # a dead worker's ffmpeg holds it
    work.discard_partial(chunk)  # not fatal
    assert held.exists()
    monkeypatch.setattr("edvr_vs.cluster.manifest.remove", real_remove)
    work.discard_partials()
    assert not held.exists()


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_cluster_is_refused_off_linux_before_any_work(monkeypatch, platform):
    from edvr_vs.cluster.session import ClusterError, check_request

    monkeypatch.setattr(sys, "platform", platform)
    with pytest.raises(ClusterError, match="Ray runs multi-node clusters on Linux only.*use --workers N"):
        check_request(2, "cpu", "auto")
    check_request(2, "cpu", None)  # --workers on one machine is fine


def test_convert_in_place_unmaps_the_file_first(tmp_path, monkeypatch):
    """Windows cannot replace a file that is mapped: ``convert X -o X`` copies the tensors out of the
    mapping and drops it before writing (seen here in /proc/self/maps)."""
    import torch

    from edvr_vs.cli import main
    from edvr_vs.nn.edvr import EDVR

    ckpt = tmp_path / "w.pth"
    torch.save({"params": EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1).state_dict()}, ckpt)
    seen: list[bool] = []
    import edvr_vs.checkpoint as checkpoint

    real_write = checkpoint.write_checkpoint

    def write(c, output, **kw):
        with open("/proc/self/maps", encoding="utf-8") as f:
            seen.append(str(ckpt) in f.read())
        return real_write(c, output, **kw)

    monkeypatch.setattr(checkpoint, "write_checkpoint", write)
    assert main(["convert", str(ckpt), "-o", str(ckpt)]) == 0
    assert seen == [False]
    assert sorted(torch.load(ckpt, weights_only=True)) == ["params"]


def test_text_files_the_package_writes_are_utf8(tmp_path):
    write_text_atomic(tmp_path / "m.json", "ввод 入力")
    assert (tmp_path / "m.json").read_bytes() == "ввод 入力".encode()


def test_nvrtc_cache_stays_in_memory_under_non_ascii_paths(monkeypatch):
    """CuPy's on-disk NVRTC cache fails under a non-ASCII %TEMP% or install path (cupy#2100, #7581)."""
    import tempfile

    from edvr_vs import kernel_loader

    monkeypatch.delenv("CUPY_CACHE_IN_MEMORY", raising=False)
    monkeypatch.delenv("CUPY_CACHE_DIR", raising=False)
    assert kernel_loader.toolchain()["cache_in_memory"] is False  # this machine's paths are ASCII
    monkeypatch.setattr(tempfile, "gettempdir", lambda: r"C:\Users\Jöns\AppData\Local\Temp")
    assert kernel_loader.toolchain()["cache_in_memory"] is True
    assert os.environ["CUPY_CACHE_IN_MEMORY"] == "1"


def test_without_cupy_the_torch_path_runs_and_says_so_once(monkeypatch, capsys):
    from edvr_vs import selfcheck
    from edvr_vs.selfcheck import KernelCheck

    monkeypatch.setattr(selfcheck, "cupy_available", lambda: False)
    monkeypatch.setattr(selfcheck, "_RESULTS", {})

    def failing(kernel: str):
        return lambda: KernelCheck(kernel, "cuda:0", "fp32", False, "torch", "ModuleNotFoundError: No module named "
                                   "'cupy'", None, 1e-5, 0.1)

    for kernel in ("deform_sample", "deform_sample_v2", "planes_to_rgb"):
        assert selfcheck._once((kernel, "cuda:0", "fp32"), failing(kernel)).path == "torch"
    err = capsys.readouterr().err
    assert err.count("CuPy is not installed") == 1 and "the torch path runs instead" in err
    assert 'pip install "edvr_vs[cuda13]"' in err and "checking the kernel" not in err
