"""Build kernels/*.cu for the CPU with g++ and the host-emulation header (cuda_host.h)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
KERNELS = HERE.parents[1] / "kernels"


def build(emulator: str, out_dir: Path) -> ctypes.CDLL:
    """Compile ``tests/kernels/<emulator>.cpp`` (which includes a kernel source) into a shared library."""
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.fail("g++ is needed to emulate the CUDA kernels on the CPU")
    lib = out_dir / f"lib{emulator}.so"
    cmd = [cxx, "-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Wno-unknown-pragmas",
           f"-I{HERE}", f"-I{KERNELS}", str(HERE / f"{emulator}.cpp"), "-o", str(lib)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return ctypes.CDLL(str(lib))


def ints(values: list[int]) -> ctypes.Array:
    return (ctypes.c_int * len(values))(*values)
