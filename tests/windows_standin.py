"""A stand-in for Windows on Linux: a Python subprocess without the POSIX-only modules and names.

Before anything else is imported, the child makes ``fcntl``, ``resource``, ``termios``, ``grp``, ``pwd``,
``pty`` and ``tty`` unimportable (``sys.modules[m] = None``) and deletes ``os.killpg``/``setsid``/``getpgid``/
``fork``/``setpgid``/``getsid`` and ``signal.SIGXFSZ``/``SIGHUP``/``SIGALRM``/``SIGQUIT``/``SIGUSR1``/
``SIGUSR2``/``SIGCHLD``/``SIGPIPE`` (the ``signal.Signals`` enum keeps its members: only the module
attributes go). Linux's own stdlib needs ``os.sysconf`` and ``signal.SIGKILL`` (``Popen.kill``), so those
stay; Windows has ``Popen.kill`` too. None of torch, vapoursynth, numpy, yaml, filelock and platformdirs needs
a stripped module on Linux (filelock falls back to its SoftFileLock without ``fcntl``, with a warning).

Everything else is Linux still (``sys.platform``, ``ctypes.WinDLL`` absent, paths): the stand-in shows
that the package never *needs* a POSIX-only facility, not that it runs on Windows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

POSIX_MODULES = ("fcntl", "resource", "termios", "grp", "pwd", "pty", "tty")
POSIX_OS_NAMES = ("killpg", "setsid", "getpgid", "fork", "setpgid", "getsid")
POSIX_SIGNALS = ("SIGXFSZ", "SIGHUP", "SIGALRM", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGPIPE")

# The child's first statements (``sys``, ``os`` and ``signal`` are already loaded by the interpreter's start).
STRIP = f"""\
import sys, os, signal
for _m in {POSIX_MODULES!r}:
    if _m in sys.modules:
        raise SystemExit("windows stand-in: " + _m + " was imported before the strip")
    sys.modules[_m] = None
for _n in {POSIX_OS_NAMES!r}:
    if hasattr(os, _n):
        delattr(os, _n)
for _n in {POSIX_SIGNALS!r}:
    if hasattr(signal, _n):
        delattr(signal, _n)
del _m, _n
"""

# Runs the CLI as ``python -m edvr_vs`` would, with the child's remaining arguments.
CLI = """\
import runpy
sys.argv = ["edvr-vs", *sys.argv[1:]]
runpy.run_module("edvr_vs", run_name="__main__", alter_sys=True)
"""


def env(**extra: str) -> dict[str, str]:
    """The environment for a stand-in child: this one's, plus ``extra``, with UTF-8 stdio."""
    return {**os.environ, "PYTHONIOENCODING": "utf-8", **extra}


def run_code(code: str, *args: str, timeout: float = 300, extra_env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` (after the strip) in a stand-in child, with ``args`` as ``sys.argv[1:]``."""
    return subprocess.run([sys.executable, "-c", STRIP + code, *args], capture_output=True, encoding="utf-8",
                          errors="replace", timeout=timeout, env=env(**(extra_env or {})), cwd=cwd or REPO)


def run_cli(*args: str, timeout: float = 300, extra_env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``edvr-vs ARGS`` in a stand-in child."""
    return run_code(CLI, *args, timeout=timeout, extra_env=extra_env, cwd=cwd)
