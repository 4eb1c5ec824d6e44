"""Every kernel source compiles with NVRTC for every target architecture, without a GPU."""

from __future__ import annotations

import os

import cupy
import pytest
from cupy_backends.cuda.libs import nvrtc

from edvr_vs.kernel_loader import DEFAULT_DEFINES, compile_options, cuda_include_dirs, read_source, source_names

ARCHS = [75, 80, 86, 89, 90]


def test_sources_and_headers_are_found():
    assert "deform_sample.cu" in source_names()
    assert cuda_include_dirs(), "no CUDA headers found in the nvidia wheels"
    assert os.path.isdir(os.path.join(os.path.dirname(cupy.__file__), "_core", "include"))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", source_names())
def test_compiles(name, arch):
    opts = [*compile_options(name), f"-I{os.path.join(os.path.dirname(cupy.__file__), '_core', 'include')}",
            f"--gpu-architecture=compute_{arch}"]
    prog = nvrtc.createProgram(read_source(name), name, [], [])
    try:
        nvrtc.compileProgram(prog, opts)
        ptx = nvrtc.getPTX(prog)
    except nvrtc.NVRTCError as e:
        pytest.fail(f"{name} for compute_{arch}: {e}\n{nvrtc.getProgramLog(prog)}")
    finally:
        nvrtc.destroyProgram(prog)
    text = ptx.decode() if isinstance(ptx, bytes) else ptx
    entries = {line.split("(")[0].split()[-1] for line in text.splitlines() if ".entry" in line}
    expected = {"deform_sample.cu": {"deform_sample_f32", "deform_sample_f16", "deform_sample_bf16"},
                "deform_sample_v2.cu": {f"deform_sample_v2_{t}_v{v}" for t in ("f32", "f16", "bf16") for v in (1, 2, 4)}
                | {"deform_sample_v2_f16_v8", "deform_sample_v2_bf16_v8"}}
    assert expected.get(name, set()) <= entries, entries
    assert set(DEFAULT_DEFINES) <= set(source_names())


def test_compile_error_surfaces_the_log():
    prog = nvrtc.createProgram("extern \"C\" __global__ void k() { undefined_thing(); }", "bad.cu", [], [])
    with pytest.raises(nvrtc.NVRTCError):
        nvrtc.compileProgram(prog, ["--gpu-architecture=compute_80"])
    assert "undefined_thing" in nvrtc.getProgramLog(prog)
    nvrtc.destroyProgram(prog)


def test_sources_found_in_a_source_checkout(monkeypatch):
    """Imported from the repository (PYTHONPATH=<repo>, no install), the sources come from kernels/."""
    import importlib.resources

    from edvr_vs import kernel_loader

    def not_installed(package: str):
        raise ModuleNotFoundError(f"No module named {package!r}")

    installed = sorted(source_names())
    monkeypatch.setattr(importlib.resources, "files", not_installed)
    root = kernel_loader.source_root()
    assert root == kernel_loader.Path(kernel_loader.__file__).resolve().parents[1] / "kernels"
    assert source_names() == installed and "deform_sample.cu" in installed
