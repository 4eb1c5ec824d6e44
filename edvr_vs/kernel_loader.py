"""The kernel loader: CUDA kernels from ``kernels/*.cu``, compiled with CuPy (NVRTC) and launched on
torch tensors. (Their Python wrappers live beside their users: ``nn/dcn.py`` for deformable
sampling, ``convert.py`` for frame conversion.)

- Sources ship inside the package as ``edvr_vs.kernels`` (the top-level ``kernels/`` folder)
  and are read from there.
- Compiled modules are cached per (source text, options, device architecture), in
  memory here and on disk by CuPy, so a changed source or macro recompiles.
- Kernels run on torch's current CUDA stream; tensors pass as raw device pointers after their
  device, dtype and contiguity are checked (``kernel_args``): no copy, no host synchronisation.
- A compile error raises ``KernelCompileError`` carrying NVRTC's log.
- Headers (``cuda_fp16.h``, ``cuda_bf16.h``) come from the nvidia pip wheels (torch's CUDA build on Linux,
  CuPy's ``[ctk]`` extra everywhere), CuPy's CUDA root, or ``CUDA_PATH``/``CUDA_HOME`` (a CUDA toolkit
  install, e.g. on Windows); ``toolchain()`` says which NVRTC and headers are in use.
- Where the temporary folder, CuPy's kernel cache or the package sits under a non-ASCII path, CuPy's
  NVRTC cache stays in memory (its on-disk cache fails there: cupy#2100, #7581).
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import os
import tempfile
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np
import torch

from edvr_vs.os_support import say

SOURCE_PACKAGE = "edvr_vs.kernels"
DEFAULT_DEFINES: dict[str, dict[str, int]] = {"deform_sample.cu": {"DS_UNROLL": 8}, "deform_sample_v2.cu": {},
                                               "convert.cu": {}}
DTYPE_SUFFIX = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}  # entry-point name suffixes
THREADS = 256
CUPY_MISSING = 'CuPy is not installed (pip install "edvr_vs[cuda13]", or "edvr_vs[cuda12]" for CUDA 12 drivers)'


class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel source; the message holds the compiler's log."""


def source_root() -> Traversable:
    """Where the ``.cu`` files are: the installed package ``edvr_vs.kernels``, or, when ``edvr_vs`` is
    imported from a source checkout (``PYTHONPATH=<repo>``, as ``scripts/gpu_check.sh`` does), the
    checkout's top-level ``kernels/`` folder beside ``edvr_vs/``."""
    try:
        return importlib.resources.files(SOURCE_PACKAGE)
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parents[1] / "kernels"
        if not checkout.is_dir():
            raise
        return checkout


def source_names() -> list[str]:
    """Every ``.cu`` file shipped with the package."""
    return sorted(p.name for p in source_root().iterdir() if p.name.endswith(".cu"))


@functools.lru_cache(maxsize=None)
def read_source(name: str) -> str:
    return source_root().joinpath(name).read_text(encoding="utf-8")


def cupy_available() -> bool:
    """Whether CuPy is installed (it is optional where no CUDA wheels exist, e.g. macOS)."""
    return importlib.util.find_spec("cupy") is not None


@functools.lru_cache(maxsize=None)
def cuda_include_dirs() -> list[str]:
    """Folders holding the CUDA headers the kernels include: the nvidia pip wheels' ``include`` folders,
    then CuPy's CUDA root's, then ``$CUDA_PATH``'s and ``$CUDA_HOME``'s (cached: looked up once)."""
    roots: list[Path] = []
    try:
        import nvidia  # namespace package of the nvidia-* wheels

        roots += [p.parent for base in nvidia.__path__ for p in Path(base).glob("*/include")]
    except ImportError:
        pass
    if cupy_available():
        try:
            import cupy.cuda

            if root := cupy.cuda.get_cuda_path():
                roots.append(Path(root))
        except Exception:  # noqa: BLE001 - a broken CuPy install: the other places may still serve
            pass
    roots += [Path(os.environ[v]) for v in ("CUDA_PATH", "CUDA_HOME") if os.environ.get(v)]
    found = [str(r / "include") for r in roots if (r / "include" / "cuda_fp16.h").is_file()]
    return list(dict.fromkeys(found))


def toolchain() -> dict[str, object]:
    """Which NVRTC (version) and CUDA headers the kernels compile with, and whether CuPy's cache is kept in
    memory; ``error`` instead when CuPy or NVRTC cannot be used."""
    if not cupy_available():
        return {"error": CUPY_MISSING}
    try:
        from cupy.cuda import nvrtc

        major, minor = nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001 - the report says what failed
        return {"error": f"NVRTC cannot be loaded: {type(e).__name__}: {e}"}
    return {"nvrtc": f"{major}.{minor}", "include_dirs": cuda_include_dirs(),
            "cache_in_memory": _cache_in_memory()}


def _cache_in_memory() -> bool:
    """Keep CuPy's compiled kernels in memory when a path NVRTC's disk cache would use is not ASCII."""
    if os.environ.get("CUPY_CACHE_IN_MEMORY") is None:
        cache = os.environ.get("CUPY_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cupy", "kernel_cache")
        if not all(p.isascii() for p in (cache, tempfile.gettempdir(), __file__)):
            os.environ["CUPY_CACHE_IN_MEMORY"] = "1"
    return os.environ.get("CUPY_CACHE_IN_MEMORY", "0") == "1"


def compile_options(name: str, defines: dict[str, int] | None = None) -> tuple[str, ...]:
    """NVRTC options: C++17, the tuning macros (defaults overridden by ``defines``), includes."""
    macros = DEFAULT_DEFINES.get(name, {}) | (defines or {})
    return ("--std=c++17", *(f"-D{k}={v}" for k, v in sorted(macros.items())),
            *(f"-I{d}" for d in cuda_include_dirs()))


@functools.lru_cache(maxsize=None)
def _module(name: str, source: str, options: tuple[str, ...], arch: str, index: int):  # -> cupy.RawModule
    import cupy

    _cache_in_memory()
    module = cupy.RawModule(code=source, options=options, backend="nvrtc")
    say(f"edvr: compiling {name} for {arch} (cuda:{index}) with NVRTC; once per process, from CuPy's cache "
        "after the first time\n")
    try:
        with cupy.cuda.Device(index):  # loaded into that device's context, not CuPy's current one
            module.compile()
    except cupy.cuda.compiler.CompileException as e:
        raise KernelCompileError(f"NVRTC failed for {arch} with {' '.join(options)}:\n{e}") from None
    return module


def get_function(name: str, entry: str, device: torch.device, defines: dict[str, int] | None = None):
    """The compiled ``extern "C"`` entry point ``entry`` of ``kernels/<name>`` for ``device``."""
    return _function(name, entry, device.index if device.index is not None else torch.cuda.current_device(),
                     tuple(sorted((defines or {}).items())))


@functools.lru_cache(maxsize=None)
def _function(name: str, entry: str, index: int, defines: tuple[tuple[str, int], ...]):
    major, minor = torch.cuda.get_device_capability(index)
    return _module(name, read_source(name), compile_options(name, dict(defines)), f"sm_{major}{minor}",
                   index).get_function(entry)


Layout = str  # "contiguous" | "channels_last" | "strided" (the kernel takes the strides as arguments)


def kernel_args(tensors: list[torch.Tensor], dtypes: list[torch.dtype], index: int, ints: list[int],
                floats: list[float], layouts: list[Layout] | None = None) -> list[object]:
    """A launch's arguments: each tensor as its raw device pointer (after checking that it is a CUDA
    tensor on device ``index`` with the dtype the kernel reads, laid out as ``layouts`` says: contiguous
    by default), then ``ints`` as int32 and ``floats`` as float32. Raw pointers, not DLPack: no event
    recorded and waited on per tensor per launch, and no dependence on CuPy's own stream settings."""
    layouts = layouts or ["contiguous"] * len(tensors)
    if not len(tensors) == len(dtypes) == len(layouts):
        raise ValueError(f"kernel_args: {len(tensors)} tensors, {len(dtypes)} dtypes, {len(layouts)} layouts")
    args: list[object] = []
    for k, (t, dtype, layout) in enumerate(zip(tensors, dtypes, layouts)):
        if t.device.type != "cuda" or t.device.index != index:
            raise ValueError(f"kernel argument {k}: on {t.device}, the launch is on cuda:{index}")
        if t.dtype != dtype:
            raise ValueError(f"kernel argument {k}: dtype {t.dtype}, the kernel reads {dtype}")
        if layout == "contiguous" and not t.is_contiguous():
            raise ValueError(f"kernel argument {k}: not contiguous (strides {t.stride()} for shape {tuple(t.shape)})")
        if layout == "channels_last" and not t.is_contiguous(memory_format=torch.channels_last):
            raise ValueError(f"kernel argument {k}: not channels-last (strides {t.stride()} for shape "
                             f"{tuple(t.shape)})")
        if layout not in ("contiguous", "channels_last", "strided"):
            raise ValueError(f"kernel argument {k}: unknown layout {layout!r}")
        args.append(np.uint64(t.data_ptr()))
    return args + [np.int32(i) for i in ints] + [np.float32(f) for f in floats]


def launch(name: str, entry: str, total: int, tensors: list[torch.Tensor], dtypes: list[torch.dtype],
           ints: list[int], defines: dict[str, int] | None = None, floats: list[float] = (),
           layouts: list[Layout] | None = None) -> None:
    """Run ``entry`` with one thread per item (``total``) on torch's current stream of the tensors' device.

    ``tensors`` (with the ``dtypes`` the kernel reads them as and their ``layouts``) are passed as
    pointers, then ``ints`` (int32), then ``floats`` (float32); see ``kernel_args``.
    """
    import cupy

    device = tensors[0].device
    index = device.index if device.index is not None else (torch.cuda.current_device() if device.type == "cuda" else 0)
    args = kernel_args(tensors, dtypes, index, ints, list(floats), layouts)
    fn = get_function(name, entry, torch.device("cuda", index), defines)
    stream = torch.cuda.current_stream(index)
    blocks = (total + THREADS - 1) // THREADS
    if blocks:
        with cupy.cuda.Device(index), _cupy_stream(stream, index):
            fn((blocks,), (THREADS,), tuple(args))


def _cupy_stream(stream: torch.cuda.Stream, index: int):  # -> cupy.cuda.Stream
    """torch's stream as CuPy's (the CUDA stream protocol where both sides have it)."""
    import cupy

    if hasattr(stream, "__cuda_stream__") and hasattr(cupy.cuda.Stream, "from_external"):
        return cupy.cuda.Stream.from_external(stream)
    return cupy.cuda.ExternalStream(stream.cuda_stream, index)
