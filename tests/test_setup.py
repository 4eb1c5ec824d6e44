"""scripts/setup.py (and its bash wrappers) find Python >= 3.12 as a user's machine has it, on Linux,
macOS and (simulated) Windows, or say what to do; the wrappers check out with LF endings."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "find_python.sh"
SETUP = REPO / "scripts" / "setup.py"
REAL = Path(os.path.realpath(sys.executable))  # this venv's interpreter, a Python >= 3.12


def load_setup():
    """scripts/setup.py as a module, to call its functions with the OS chosen by the test."""
    spec = importlib.util.spec_from_file_location("edvr_vs_setup", SETUP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tools(tmp_path: Path) -> str:
    """A PATH with the coreutils the script needs and no Python at all."""
    bin_dir = tmp_path / "tools"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("ls", "sort", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def fake_pyenv(root: Path, versions: dict[str, Path], windows: bool = False) -> None:
    for version, target in versions.items():
        python = root / "versions" / version / ("python.exe" if windows else "bin/python3")
        python.parent.mkdir(parents=True)
        python.symlink_to(target)


def test_no_python_says_what_to_do(tmp_path):
    res = run({"PATH": tools(tmp_path), "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "none")})
    assert res.returncode == 1
    assert "needs Python >= 3.12" in res.stderr and "pyenv install 3.12" in res.stderr
    assert "EDVR_VS_PYTHON" in res.stderr and res.stdout == ""


def test_setup_py_says_what_to_do_on_every_os(tmp_path):
    """Run by a Python that is there (any 3.8+) when no Python >= 3.12 is."""
    env = {"PATH": tools(tmp_path), "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "none")}
    res = subprocess.run([str(REAL), str(SETUP), "find-python"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stdout == ""
    for advice in ("needs Python >= 3.12", "pyenv install 3.12", "EDVR_VS_PYTHON", "py install 3.12",
                   "python.org", "brew install python@3.12", str(tmp_path / "none" / "versions")):
        assert advice in res.stderr


def test_pyenv_versions_are_searched_oldest_new_enough_first(tmp_path):
    root = tmp_path / "pyenv"
    fake_pyenv(root, {"3.11.9": Path("/bin/false"), "3.12.7": REAL, "3.13.1": REAL})
    res = run({"PATH": tools(tmp_path), "HOME": str(tmp_path), "PYENV_ROOT": str(root)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(root / "versions" / "3.12.7" / "bin" / "python3")


def test_path_comes_first_and_override_wins(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(REAL)
    root = tmp_path / "pyenv"
    fake_pyenv(root, {"3.12.7": REAL})
    env = {"PATH": f"{bin_dir}:{tools(tmp_path)}", "HOME": str(tmp_path), "PYENV_ROOT": str(root)}
    assert run(env).stdout.strip() == str(bin_dir / "python3")
    assert run(env | {"EDVR_VS_PYTHON": str(REAL)}).stdout.strip() == str(REAL)
    bad = run(env | {"EDVR_VS_PYTHON": "/usr/bin/false"})
    assert bad.returncode == 1 and "not a working Python >= 3.12" in bad.stderr


@pytest.mark.parametrize("windows", [False, True])
def test_pyenv_versions_sort_numerically(tmp_path, monkeypatch, windows):
    """3.12.10 after 3.12.9 and 3.13 after 3.9 (not as text); pyenv-win keeps versions\\X\\python.exe."""
    root = tmp_path / "pyenv"
    fake_pyenv(root, {"3.13.1": REAL, "3.12.10": REAL, "3.9.18": Path("/bin/false"), "3.12.9": REAL}, windows)
    monkeypatch.setenv("PATH", tools(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(root))
    monkeypatch.delenv("EDVR_VS_PYTHON", raising=False)
    setup = load_setup()
    exe = "python.exe" if windows else "bin/python3"
    expected = [str(root / "versions" / v / exe) for v in ("3.9.18", "3.12.9", "3.12.10", "3.13.1")]
    assert list(setup.pyenv_pythons(windows)) == expected
    assert setup.find_python(windows) == expected[1]


def test_pyenv_win_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", tools(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PYENV_ROOT", raising=False)
    setup = load_setup()
    assert setup.pyenv_root(windows=True) == tmp_path / ".pyenv" / "pyenv-win"
    assert setup.pyenv_root(windows=False) == tmp_path / ".pyenv"


def test_py_launcher_comes_first_on_windows(tmp_path, monkeypatch):
    """A simulated Windows asks `py -3.14`, then `py -3.13` (which it has), before python3 on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    asked = tmp_path / "asked"
    py = bin_dir / "py"
    py.write_text(f'#!/bin/sh\necho "$1" >>{asked}\n[ "$1" = -3.13 ] || exit 103\nshift\nexec {REAL} "$@"\n',
                  encoding="utf-8")
    py.chmod(0o755)
    (bin_dir / "python3").symlink_to(REAL)
    monkeypatch.setenv("PATH", f"{bin_dir}:{tools(tmp_path)}")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "none"))
    monkeypatch.delenv("EDVR_VS_PYTHON", raising=False)
    setup = load_setup()
    assert setup.find_python(windows=True) == str(REAL)
    assert asked.read_text(encoding="utf-8").split() == ["-3.14", "-3.13"]
    assert setup.find_python(windows=False) == str(bin_dir / "python3")


def test_venv_interpreter_is_in_bin_or_scripts():
    setup = load_setup()
    venv = Path("somewhere") / ".venv"
    assert setup.venv_python(venv, windows=False) == venv / "bin" / "python"
    assert setup.venv_python(venv, windows=True) == venv / "Scripts" / "python.exe"


def test_shell_scripts_are_checked_out_with_lf():
    """bash reads CRLF lines as ending in \\r: every *.sh and .ci/run is LF-only, and .gitattributes
    keeps them so on Windows whatever core.autocrlf says."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", "*.sh", ".ci/run"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    assert ".ci/run" in listed and "scripts/test.sh" in listed
    for name in listed:
        assert b"\r" not in (REPO / name).read_bytes(), name
    attrs = subprocess.run(["git", "check-attr", "eol", "--", *listed, "scripts/setup.py"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert attrs and all(line.endswith(": eol: lf") for line in attrs), attrs
    lines = (REPO / ".gitattributes").read_text(encoding="utf-8").splitlines()
    assert any(line.split()[:1] == ["*.sh"] and "eol=lf" in line.split() for line in lines)
    binary = subprocess.run(["git", "check-attr", "binary", "--", "edvr_vs/weights/x.pth"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    assert binary.strip().endswith("binary: set")
