"""`pip install edvr_vs` and each extra resolve, from wheels only, on every target platform and Python.

uv (from the test extra) resolves pyproject.toml for another platform than this one: pip's
``--platform`` would still evaluate environment markers for the running Linux. The answers come from
the package index (PyPI unless UV_DEFAULT_INDEX / UV_INDEX_URL say otherwise); without a reachable index
the tests skip, and a resolution that fails with the index reachable fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import pytest

from tests.conftest import REPO


@dataclass(frozen=True)
class Target:
    name: str
    platform: str  # uv's --python-platform for the runtime extras
    test_platform: str  # ... for the test extra (vs-preview's PyQt6 wants a newer glibc)
    macos: str | None = None  # MACOSX_DEPLOYMENT_TARGET

    @property
    def has_cuda_wheels(self) -> bool:
        return self.macos is None


TARGETS = (
    Target("windows-amd64", "x86_64-pc-windows-msvc", "x86_64-pc-windows-msvc"),
    # torch >= 2.12 and onnxruntime >= 1.24.1 (the first with cp314 wheels) need macOS 14.
    Target("macos-arm64", "aarch64-apple-darwin", "aarch64-apple-darwin", macos="14.0"),
    # PyQt6 6.10 (vs-preview 0.20.1): manylinux_2_34 wheels on x86_64, manylinux_2_39 on aarch64.
    Target("linux-x86_64", "x86_64-manylinux_2_28", "x86_64-manylinux_2_34"),
    Target("linux-aarch64", "aarch64-manylinux_2_28", "aarch64-manylinux_2_39"),
)
PYTHONS = ("3.12", "3.13", "3.14")
# Extras resolved together; cuda12 and cuda13 are alternatives, so they go to different resolutions.
EXTRA_SETS = ((), ("cuda13", "cluster", "onnx"), ("cuda12", "test"))
CASES = [(t, py, extras) for t in TARGETS for py in PYTHONS for extras in EXTRA_SETS]


def _case_id(case: tuple[Target, str, tuple[str, ...]]) -> str:
    target, py, extras = case
    return f"{target.name}-py{py}-{'+'.join(extras) or 'core'}"


def _index_url() -> str:
    url = os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL") or "https://pypi.org/simple"
    return url.rstrip("/") + "/"


def _index_unreachable() -> str | None:
    """Why the package index cannot be reached, or None when it answers."""
    req = urllib.request.Request(_index_url() + "uv/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            resp.read(1)
    except urllib.error.HTTPError as e:  # an answer, even an error status, means the network works
        return None if e.code < 500 else f"{_index_url()} answered HTTP {e.code}"
    except (OSError, ValueError) as e:
        return f"{_index_url()} unreachable: {e}"
    return None


@dataclass(frozen=True)
class Resolution:
    rc: int
    stdout: str
    stderr: str

    @property
    def pins(self) -> dict[str, str]:
        return {re.sub(r"[-_.]+", "-", m[1]).lower(): m[2]
                for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", self.stdout, re.M)}


def _compile(target: Target, py: str, extras: tuple[str, ...]) -> Resolution:
    from uv import find_uv_bin  # the test extra's uv

    platform = target.test_platform if "test" in extras else target.platform
    cmd = [find_uv_bin(), "pip", "compile", str(REPO / "pyproject.toml"), "--quiet", "--no-header",
           "--no-annotate", "--python", sys.executable, "--python-version", py, "--python-platform", platform,
           "--only-binary", ":all:"]
    for extra in extras:
        cmd += ["--extra", extra]
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", NO_COLOR="1")
    env.pop("MACOSX_DEPLOYMENT_TARGET", None)
    if target.macos:
        env["MACOSX_DEPLOYMENT_TARGET"] = target.macos
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return Resolution(res.returncode, res.stdout, res.stderr)


@cache
def _resolve_all() -> dict[str, Resolution]:
    """All cases at once, a few at a time: each is mostly waiting on the index."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(zip(map(_case_id, CASES), pool.map(lambda c: _compile(*c), CASES), strict=True))


@pytest.fixture(scope="module")
def index_reachable() -> None:
    if why := _index_unreachable():
        pytest.skip(f"no network: {why}")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_resolves_from_wheels(case, index_reachable):
    target, py, extras = case
    res = _resolve_all()[_case_id(case)]
    if res.rc != 0:
        if why := _index_unreachable():
            pytest.skip(f"no network (lost during the resolution): {why}")
        pytest.fail(f"uv could not resolve edvr_vs[{','.join(extras)}] for {target.platform}, Python {py}:\n"
                    f"{res.stderr}")
    pins = res.pins
    for name in ("torch", "vapoursynth", "numpy", "pyyaml", "imageio-ffmpeg", "filelock", "platformdirs"):
        assert name in pins, f"{name} missing from {sorted(pins)}"
    assert ("vapoursynth-bestsource" in pins) == target.has_cuda_wheels
    cupy = {name for name in pins if name.startswith("cupy")}
    nvrtc = {name for name in pins if name.startswith("nvidia-cuda-nvrtc")}
    if "cuda13" in extras:
        assert cupy == ({"cupy-cuda13x"} if target.has_cuda_wheels else set())
    elif "cuda12" in extras:
        assert cupy == ({"cupy-cuda12x"} if target.has_cuda_wheels else set())
        if target.name.startswith("windows"):
            assert nvrtc == {"nvidia-cuda-nvrtc-cu12"}, nvrtc  # the CUDA 12 NVRTC, not torch's
    else:
        assert not cupy, "CuPy comes only with the cuda13 or cuda12 extra"
    if cupy:  # the kernels compile: NVRTC and its headers come as wheels (torch's on Linux, CuPy's ctk on Windows)
        assert nvrtc, f"no NVRTC wheel beside {sorted(cupy)}"
    if "cluster" in extras:
        assert "ray" in pins
    if "onnx" in extras:
        assert {"onnx", "onnxscript", "onnxruntime"} <= pins.keys()
    if "test" in extras:
        assert {"uv", "pytest", "torchvision", "scikit-video", "vsjetpack"} <= pins.keys()
        assert pins["vspreview"] == "0.20.1"
        assert ("vapoursynth-mlrt-ort" in pins) == target.has_cuda_wheels
