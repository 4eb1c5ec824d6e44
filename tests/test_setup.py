"""scripts/find_python.sh finds Python >= 3.12 as a user's machine has it, or says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "find_python.sh"
REAL = Path(os.path.realpath(sys.executable))  # this venv's interpreter, a Python >= 3.12


def tools(tmp_path: Path) -> str:
    """A PATH with the coreutils the script needs and no Python at all."""
    import shutil

    bin_dir = tmp_path / "tools"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("ls", "sort", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def fake_pyenv(root: Path, versions: dict[str, Path]) -> None:
    for version, target in versions.items():
        bin_dir = root / "versions" / version / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "python3").symlink_to(target)


def test_no_python_says_what_to_do(tmp_path):
    res = run({"PATH": tools(tmp_path), "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "none")})
    assert res.returncode == 1
    assert "needs Python >= 3.12" in res.stderr and "pyenv install 3.12" in res.stderr
    assert "EDVR_VS_PYTHON" in res.stderr and res.stdout == ""


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
