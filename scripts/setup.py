"""Set up edvr_vs's virtual environment and run its tests or demo, on Linux, macOS and Windows.

Any Python 3.8+ runs this file (stdlib only); the environment it makes gets a Python >= 3.12.

    python scripts/setup.py find-python   print a Python >= 3.12 interpreter
    python scripts/setup.py venv          create or update <repo>/.venv; print its interpreter
    python scripts/setup.py test [ARGS]   set up, then run the test suite (ARGS go to pytest)
    python scripts/setup.py demo [ARGS]   set up, then run the demo (ARGS go to `edvr-vs demo`)

On Windows: py scripts\\setup.py test. The bash scripts beside this file wrap it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WINDOWS = os.name == "nt"
MINIMUM = (3, 12)
# CuPy (CUDA 13 build; no wheel, so nothing, on macOS), the test suite's tools, Ray, the ONNX export.
EXTRAS = "cuda13,test,cluster,onnx"
# What the installation depends on: a change to any of these reinstalls.
STAMPED = [REPO / "pyproject.toml", REPO / "scripts" / "setup.py"] + [
    REPO / "scripts" / name for name in ("bootstrap.sh", "find_python.sh", "test.sh", "demo.sh")
]
NO_PYTHON = """edvr_vs needs Python >= 3.12 (the vapoursynth wheel requires it), and none was found
       {where}.
       Install one: 'pyenv install 3.12' or your distribution's python3.12 package (Linux),
       'brew install python@3.12' or 'pyenv install 3.12' (macOS), 'py install 3.12' or the
       installer from https://www.python.org/downloads/ (Windows); or point EDVR_VS_PYTHON at
       its interpreter. Then run this again."""


class SetupError(Exception):
    """A problem the user has to fix; main() prints it and exits 1."""


def say(message: str) -> None:
    """Progress on stderr (stdout carries only what a sub-command prints)."""
    print(f"edvr_vs: {message}", file=sys.stderr, flush=True)


def version_of(python: str) -> tuple[int, ...] | None:
    """The version of the interpreter `python`, or None when it does not run as a Python."""
    try:
        out = subprocess.run([python, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
                             capture_output=True, text=True, timeout=60)
        return tuple(int(n) for n in out.stdout.split(".")) if out.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def is_new_enough(python: str) -> bool:
    """Whether `python` runs and is at least MINIMUM."""
    version = version_of(python)
    return version is not None and version >= MINIMUM


def launcher_pythons() -> Iterator[str]:
    """The interpreters Windows' `py` launcher has for 3.14, 3.13 and 3.12, newest first."""
    code = "import sys; sys.stdout.buffer.write(sys.executable.encode())"  # UTF-8 whatever the code page
    py = shutil.which("py")
    if not py:
        return
    for minor in (14, 13, 12):
        try:
            out = subprocess.run([py, f"-3.{minor}", "-c", code], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip():
            yield out.stdout.decode("utf-8", "replace").strip()


def pyenv_root(windows: bool) -> Path:
    """pyenv's (or pyenv-win's) root: $PYENV_ROOT, else `pyenv root`, else its default place."""
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip():
                return Path(out.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    return Path.home() / ".pyenv" / "pyenv-win" if windows else Path.home() / ".pyenv"


def version_key(name: str) -> tuple[int, ...]:
    """Sort key of a version directory's name: its numbers, so that 3.12.10 comes after 3.12.9."""
    return tuple(int(n) for n in re.findall(r"\d+", name))


def pyenv_pythons(windows: bool) -> Iterator[str]:
    """The interpreters of pyenv's 3.x versions, oldest first."""
    versions = pyenv_root(windows) / "versions"
    for name in sorted((p.name for p in versions.glob("3.*")), key=lambda n: (version_key(n), n)):
        yield str(versions / name / "python.exe") if windows else str(versions / name / "bin" / "python3")


def candidates(windows: bool) -> Iterator[str]:
    """Interpreters to try, in order: the `py` launcher's (Windows), PATH's, pyenv's."""
    if windows:
        yield from launcher_pythons()
    for name in ("python3", "python3.14", "python3.13", "python3.12", "python"):
        path = shutil.which(name)
        if path:
            yield path
    yield from pyenv_pythons(windows)


def find_python(windows: bool = WINDOWS) -> str:
    """A Python >= 3.12 as a user's machine has one: $EDVR_VS_PYTHON, else the first of candidates()."""
    override = os.environ.get("EDVR_VS_PYTHON")
    if override:
        if is_new_enough(override):
            return override
        raise SetupError(f"EDVR_VS_PYTHON={override} is not a working Python >= 3.12")
    for python in candidates(windows):
        if is_new_enough(python):
            return python
    where = (("by the py launcher (py -3.14 .. -3.12), " if windows else "")
             + "on PATH (python3, python3.14 .. python3.12, python) or among pyenv's versions in "
             + str(pyenv_root(windows) / "versions"))
    raise SetupError(NO_PYTHON.format(where=where))


def venv_python(venv: Path, windows: bool = WINDOWS) -> Path:
    """The interpreter of the virtual environment `venv`."""
    return venv / "Scripts" / "python.exe" if windows else venv / "bin" / "python"


def setup_venv(venv: Path = REPO / ".venv") -> Path:
    """Create or reuse `venv`, install edvr_vs (editable, with the EXTRAS) when
    STAMPED changed since the last installation, and point VapourSynth at it; return its interpreter."""
    python = venv_python(venv)
    if not is_new_enough(str(python)):
        base = find_python()
        say(f"creating {venv} with {base} ({'.'.join(map(str, version_of(base) or ()))})")
        shutil.rmtree(venv, ignore_errors=True)
        if subprocess.run([base, "-m", "venv", str(venv)]).returncode:
            raise SetupError(f"{base} -m venv {venv} failed")
    stamp = venv / ".edvr_vs-installed"
    want = hashlib.sha256(b"".join(path.read_bytes() for path in STAMPED)).hexdigest()
    if not stamp.exists() or stamp.read_text(encoding="utf-8").strip() != want:
        say(f"installing edvr_vs and its dependencies into {venv} (torch is a few GB; minutes on a first run)")
        log = venv / "install.log"
        with open(log, "wb") as out:
            ok = all(subprocess.run([str(python), "-m", "pip", "install", *args], stdout=out,
                                    stderr=subprocess.STDOUT).returncode == 0
                     for args in (["--upgrade", "pip"], ["-e", f"{REPO}[{EXTRAS}]"]))
        if not ok:
            print("\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]), file=sys.stderr)
            raise SetupError(f"installing into {venv} failed; full log: {log}")
        stamp.write_text(want + "\n", encoding="utf-8")
    # vspipe finds this environment's Python through VapourSynth's runtime configuration.
    if subprocess.run([str(python), "-m", "vapoursynth", "config"], stdout=subprocess.DEVNULL).returncode:
        raise SetupError(f"`vapoursynth config` failed in {venv}")
    return python


def run_in_repo(python: Path, args: list[str]) -> int:
    """Run `python ARGS` in the repository and return its exit code (on POSIX it replaces this process)."""
    os.chdir(REPO)
    if not WINDOWS:
        os.execv(python, [str(python)] + args)
    with subprocess.Popen([str(python)] + args) as child:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # the console sent Ctrl+C to the child too; its exit code is ours
                pass


def main(argv: list[str]) -> int:
    """Dispatch a sub-command (see the module's docstring)."""
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command not in ("find-python", "venv", "test", "demo"):
        print(__doc__, file=sys.stderr)
        return 0 if command in ("-h", "--help") else 2
    try:
        if command == "find-python":
            print(find_python())
            return 0
        python = setup_venv()
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if command == "venv":
        print(python)
        return 0
    return run_in_repo(python, (["-m", "pytest", "-q"] if command == "test" else ["-m", "edvr_vs", "demo"]) + args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
