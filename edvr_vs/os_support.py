"""What differs between Linux, Windows and macOS, behind plain functions: the rest of the package reads
the same on every OS.

- locks across processes and threads (``filelock``: ``flock`` on POSIX, ``LockFileEx`` on Windows; the
  OS drops them when their holder dies);
- the cache directory (``platformdirs``: ``~/.cache`` or ``$XDG_CACHE_HOME`` on Linux,
  ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%\\<app>\\Cache`` on Windows);
- child processes in a group of their own (so Ctrl-C reaches only us) and stopped with ``Popen.kill``;
- how a child ended, in words (a POSIX signal, or a Windows NTSTATUS such as 0xC0000005);
- replacing a file that a reader holds open (Windows refuses while a player, a virus scanner or an mmap
  has it): retried, never losing the finished file;
- UTF-8 for subprocess text (Windows would decode in its ANSI code page);
- messages on ``sys.stderr``, which is None under pythonw and GUI hosts;
- the signals that ask a long job to stop, the CPU's name, and peak memory.

Every POSIX-only name is reached through ``getattr``/``hasattr`` or an import guarded here, so a
Python without them (Windows, or the stand-in test) imports and runs this module.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import filelock
import platformdirs

APP = "edvr_vs"
TEXT = {"encoding": "utf-8", "errors": "replace"}  # subprocess.run/Popen keywords for text output
REPLACE_WAIT_S = 10.0  # how long a replace that a reader blocks is retried

# Windows NTSTATUS codes a crashed child exits with (its exit codes are never negative).
NTSTATUS = {0xC0000005: "an access violation", 0xC00000FD: "a stack overflow", 0xC0000409: "a stack buffer overrun",
            0xC0000017: "running out of memory", 0xC000013A: "Ctrl-C", 0xC0000142: "a DLL that failed to load",
            0xC0000135: "a missing DLL"}
SIGNAL_CAUSES = {"SIGXFSZ": " (the file size limit, ulimit -f, was reached)", "SIGSEGV": " (it crashed)"}


class LockBusy(RuntimeError):
    """``exclusive_lock(..., wait=False)`` found the lock held by someone else."""


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], on_wait: Callable[[], None] | None = None,
                   wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block. If another process
    or thread holds it: wait (``on_wait`` is called once first), or with ``wait=False`` raise LockBusy. A
    lock file left behind by a killed process blocks nobody."""
    lock = filelock.FileLock(os.fspath(path), thread_local=False)
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        if not wait:
            raise LockBusy(os.fspath(path)) from None
        if on_wait:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def cache_dir() -> Path:
    """The OS's cache directory for this package (``$EDVR_VS_HOME`` overrides it)."""
    if os.environ.get("EDVR_VS_HOME"):
        return Path(os.environ["EDVR_VS_HOME"])
    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def own_group() -> dict[str, object]:
    """``Popen`` keywords that start the child in a process group of its own (a session on POSIX), so a
    Ctrl-C in the terminal reaches this process, which then stops the child itself."""
    if hasattr(os, "setsid"):
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def stop_process(proc: subprocess.Popen) -> None:
    """Kill ``proc`` (if still running) and reap it, without raising: it runs while another error is
    on its way out."""
    with contextlib.suppress(OSError):
        if proc.poll() is None:
            proc.kill()
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def ended(rc: int) -> str:
    """How a child with exit status ``rc`` ended, in words: an exit code, a POSIX signal (negative
    ``rc``) or a Windows NTSTATUS crash code."""
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"was killed by {name}{SIGNAL_CAUSES.get(name, '')}"
    if rc >= 0xC0000000:
        return f"crashed with {NTSTATUS.get(rc, 'status')} 0x{rc:08X}"
    return f"failed with exit code {rc}"


def is_broken_pipe(e: BaseException) -> bool:
    """Writing to a pipe whose reader has gone: BrokenPipeError on POSIX, OSError(EINVAL) on Windows."""
    return isinstance(e, BrokenPipeError) or (os.name == "nt" and isinstance(e, OSError) and e.errno == errno.EINVAL)


class ReplaceError(OSError):
    """A finished file could not be moved into place; the message names where it was kept."""


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``os.replace(src, dst)``, retried for up to ``REPLACE_WAIT_S`` while something holds ``dst`` open
    (Windows refuses then: PermissionError, WinError 5 or 32). If it still fails, ``src`` is left as it is
    and ReplaceError names it."""
    deadline = time.monotonic() + REPLACE_WAIT_S
    delay = 0.05
    while True:
        try:
            os.replace(src, dst)
            return
        except PermissionError as e:
            if time.monotonic() + delay > deadline:
                raise ReplaceError(e.errno, f"cannot replace {os.fspath(dst)} ({e.strerror or e}: another program "
                                            f"may have it open); the finished file is kept as {os.fspath(src)}"
                                   ) from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def remove(path: str | os.PathLike[str]) -> bool:
    """Delete ``path`` if it exists; False (and the file left) when something holds it open (Windows)."""
    try:
        Path(path).unlink(missing_ok=True)
        return True
    except PermissionError:
        return False


def say(text: str) -> None:
    """``text`` on stderr, when there is one (pythonw and GUI hosts such as VSEdit have none)."""
    err = sys.stderr
    if err is None:
        return
    with contextlib.suppress(OSError, ValueError):
        err.write(text)
        err.flush()


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file the way the OS sees it: case-insensitively on Windows, and through
    the file system itself (macOS's default volumes ignore case; links) when both exist."""
    if os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b)):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def multi_node_ray() -> str | None:
    """Why Ray cannot join a multi-node cluster here (Windows and macOS run Ray on one machine only), or
    None where it can (Linux)."""
    if sys.platform.startswith("linux"):
        return None
    return f"Ray runs multi-node clusters on Linux only, not on {platform.system() or sys.platform}"


def stop_signals() -> list[signal.Signals]:
    """The signals that ask a long job to stop here: Ctrl-C, SIGTERM (POSIX), Ctrl-Break (Windows, where
    SIGTERM is never delivered)."""
    return [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, n)]


def cpu_name() -> str:
    """The processor's marketing name where the OS tells it, else its architecture."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
    elif sys.platform == "darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            name = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, timeout=5,
                                  **TEXT).stdout.strip()
            if name:
                return name
    return platform.processor() or platform.machine()


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: ``ru_maxrss`` (KiB on Linux, bytes on macOS), or on
    Windows (no ``resource`` module) the peak working set from ``GetProcessMemoryInfo``."""
    try:
        import resource
    except ImportError:
        return _peak_working_set() / 2 ** 20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


def _peak_working_set() -> int:
    """Windows: this process's peak working set in bytes (PROCESS_MEMORY_COUNTERS.PeakWorkingSetSize)."""
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                    *((name, ctypes.c_size_t) for name in (
                        "PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage", "QuotaPagedPoolUsage",
                        "QuotaPeakNonPagedPoolUsage", "QuotaNonPagedPoolUsage", "PagefileUsage",
                        "PeakPagefileUsage"))]

    counters = Counters(cb=ctypes.sizeof(Counters))
    kernel32 = ctypes.WinDLL("kernel32")
    process = kernel32.GetCurrentProcess()
    if not ctypes.WinDLL("psapi").GetProcessMemoryInfo(process, ctypes.byref(counters), counters.cb):
        raise OSError(ctypes.get_last_error(), "GetProcessMemoryInfo failed")
    return counters.PeakWorkingSetSize
