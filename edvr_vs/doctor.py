"""``edvr-vs doctor``: what this machine has, whether each CUDA kernel passes its self-check, and how fast
a model runs on every device.

The report (``report()``, a JSON-able dict): ``versions`` (Python, torch and its CUDA, CuPy, NVRTC and the
CUDA headers it compiles with, VapourSynth, the source plugins, ffmpeg), ``devices`` (the CPU and every
GPU torch sees: name, memory, compute capability), ``kernels`` (``edvr_vs.selfcheck`` per kernel, device
and dtype; "not applicable" on the CPU, which converts with zimg and samples with torch), ``benchmark``
(steady-state fps of the model on each device, at ``BENCH_SIZE`` for that device, for about ``seconds``)
and ``problems``: the reasons for a non-zero exit, empty when everything that exists works.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import time

import torch
import vapoursynth as vs

from edvr_vs import kernel_loader, selfcheck, zoo
from edvr_vs.colour import Colour
from edvr_vs.frame_io import clip_from_frames
from edvr_vs.media import MediaError, ffmpeg_exe
from edvr_vs.os_support import TEXT, cpu_name

core = vs.core

BENCH_SIZE = {"cpu": (176, 144), "cuda": (640, 360)}  # (width, height) of the benchmark's input
KERNEL_NAMES = ("deform_sample", "deform_sample_v2", "planes_to_rgb", "rgb_to_planes")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, object]:
    try:
        import cupy

        cupy_version: str = cupy.__version__
    except Exception as e:  # noqa: BLE001 - any import failure is what the report should say
        cupy_version = f"not usable: {type(e).__name__}: {e}"
    try:
        exe = ffmpeg_exe()
        first = subprocess.run([exe, "-version"], capture_output=True, timeout=20, **TEXT).stdout.splitlines()
        ffmpeg = {"path": exe, "version": first[0] if first else "?"}
    except (MediaError, OSError, subprocess.SubprocessError) as e:
        ffmpeg = {"error": str(e)}
    plugins = {ns: ".".join(map(str, getattr(core, ns).version)) if hasattr(core, ns) else None
               for ns in ("bs", "lsmas")}
    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "cupy": cupy_version, "nvrtc": kernel_loader.toolchain(),
            "vapoursynth": core.core_version.release_major,
            "vapoursynth_wheel": _version("vapoursynth"), "source_plugins": plugins, "ffmpeg": ffmpeg,
            "edvr_vs": _version("edvr_vs")}


def devices() -> list[dict[str, object]]:
    out: list[dict[str, object]] = [{"device": "cpu", "name": cpu_name(), "torch_threads": torch.get_num_threads()}]
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        p = torch.cuda.get_device_properties(i)
        out.append({"device": f"cuda:{i}", "name": p.name, "memory_gib": round(p.total_memory / 2 ** 30, 2),
                    "compute_capability": f"{p.major}.{p.minor}"})
    return out


def kernel_checks(device: torch.device) -> list[dict[str, object]]:
    """Every kernel's self-check on ``device``: both sampling kernels at fp32/fp16/bf16, conversion of 8- and 10-bit
    4:2:0 both ways at fp32/fp16 (the filter's formats for most video)."""
    if device.type != "cuda":
        return [{"kernel": k, "device": str(device), "status": "not applicable"} for k in KERNEL_NAMES]
    checks = [check(device, dtype) for check in (selfcheck.check_deform_sample, selfcheck.check_deform_sample_v2)
              for dtype in selfcheck.TOLERANCE]
    colour = Colour(1, False, 0)
    for fmt in (vs.YUV420P8, vs.YUV420P10):
        for dtype in (torch.float32, torch.float16):
            f = core.get_video_format(fmt)
            checks += [selfcheck.check_planes_to_rgb(f, colour, device, dtype),
                       selfcheck.check_rgb_to_planes(f, colour, device, dtype)]
    return [{**c.as_dict(), "status": "ok" if c.ok else "failed"} for c in checks]


def benchmark(device: torch.device, model: str | None, seconds: float) -> dict[str, object]:
    """Steady-state fps of ``edvr_vs.edvr`` on ``device`` (frames after the first, as vspipe requests them)."""
    from edvr_vs.filter import edvr

    width, height = BENCH_SIZE[device.type]
    g = torch.Generator().manual_seed(0)
    clip = clip_from_frames(torch.rand(8, 3, height, width, generator=g)) * 500
    row: dict[str, object] = {"device": str(device), "model": model or zoo.default_model(),
                              "input": f"{width}x{height}", "seconds": seconds}
    try:
        out = edvr(clip, model=model, device=str(device))
        t0 = time.perf_counter()
        t1, done = t0, 0
        for done, _ in enumerate(out.frames(prefetch=core.num_threads), start=1):
            if done == 1:
                t1 = time.perf_counter()
            if time.perf_counter() - t1 >= seconds and done > 1:
                break
        t2 = time.perf_counter()
        row |= {"output": f"{out.width}x{out.height}", "first_frame_s": round(t1 - t0, 3), "frames": done,
                "fps": round((done - 1) / (t2 - t1), 3) if done > 1 else round(1 / (t1 - t0), 3)}
    except Exception as e:  # noqa: BLE001 - the report says what failed instead of dying without JSON
        row["error"] = f"{type(e).__name__}: {e}" if not isinstance(e, vs.Error) else str(e)
    return row


def report(*, model: str | None = None, seconds: float = 10.0) -> dict[str, object]:
    devs = devices()
    targets = [torch.device(d["device"]) for d in devs]
    kernels = [c for dev in targets for c in kernel_checks(dev)]
    bench = [benchmark(dev, model, seconds) for dev in targets]
    problems = [f"{c['kernel']} on {c['device']} ({c['dtype']}): {c['reason']}" for c in kernels
                if c["status"] == "failed"]
    problems += [f"benchmark on {b['device']}: {b['error']}" for b in bench if "error" in b]
    return {"versions": versions(), "devices": devs, "kernels": kernels, "benchmark": bench, "problems": problems}


def print_text(rep: dict[str, object]) -> None:
    """The report for a person, on stdout."""
    v = rep["versions"]
    print(f"edvr_vs {v['edvr_vs']}  Python {v['python']}  torch {v['torch']} (CUDA {v['torch_cuda']})  "
          f"CuPy {v['cupy']}  VapourSynth R{v['vapoursynth']}")
    print(f"source plugins: {v['source_plugins']}  ffmpeg: {v['ffmpeg'].get('version', v['ffmpeg'])}")
    nvrtc = v["nvrtc"]
    print(f"NVRTC {nvrtc['nvrtc']}, CUDA headers from {', '.join(nvrtc['include_dirs']) or 'nowhere'}"
          f"{', kernel cache in memory' if nvrtc['cache_in_memory'] else ''}" if "nvrtc" in nvrtc
          else f"NVRTC: {nvrtc['error']}")
    for d in rep["devices"]:
        print("device " + "  ".join(f"{k}={val}" for k, val in d.items()))
    for c in rep["kernels"]:
        detail = (f"{c['dtype']}: {c['status']} via {c['path']}, error {c['max_error']}, {c['ms']} ms"
                  if "path" in c else c["status"])
        print(f"kernel {c['kernel']} on {c['device']}: {detail}{'  (' + c['reason'] + ')' if c.get('reason') else ''}")
    for b in rep["benchmark"]:
        result = f"{b['fps']} fps ({b['frames']} frames, first {b['first_frame_s']} s)" if "fps" in b else b["error"]
        print(f"benchmark {b['model']} on {b['device']} at {b['input']}: {result}")
    print("problems: " + ("; ".join(rep["problems"]) if rep["problems"] else "none"))
