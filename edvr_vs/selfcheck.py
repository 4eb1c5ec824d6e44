"""The CUDA kernels prove themselves before they touch a frame.

The first time a kernel runs on a device at a dtype (per process), it is compared with its
reference on a small random case: each deformable-sampling kernel with its torch reference (offsets
that reach past every border, fractional and exact border positions, two groups; v2 on the model's
real layouts: channels-last input, offsets and mask logits as slices of one channels-last tensor), each frame
conversion direction with zimg itself (``core.resize.Bilinear``). A kernel that fails to compile,
fails to launch or disagrees beyond ``TOLERANCE`` is replaced by its reference path (the other
sampling kernel if it passed, else torch's sampling; zimg's conversion, frames then travel as RGB), with one line on stderr naming the kernel,
device, dtype and reason. Results are kept per process (``results()``) for ``edvr-vs doctor``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import vapoursynth as vs

from edvr_vs.colour import Colour
from edvr_vs.convert import PlaneFormat, planes_to_rgb, rgb_to_planes
from edvr_vs.kernel_loader import CUPY_MISSING, cupy_available
from edvr_vs.nn.sampling import (sample_columns_cuda, sample_columns_torch, sample_pixel_columns_cuda,
                                 sample_pixel_columns_torch)
from edvr_vs.os_support import say

core = vs.core

# Largest allowed max |kernel − reference| / max |reference| for the sampling, by dtype.
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
# Largest allowed max |kernel − zimg| for conversions: in [0, 1] units for float RGB/planes (by the
# kernel's RGB dtype; half-float planes: one fp16 step near 1), in code values for integer planes.
CONVERT_TOLERANCE = {torch.float32: 2e-4, torch.float16: 2e-3, "half planes": 1e-3, "codes": 1.0}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass(frozen=True)
class KernelCheck:
    """How one kernel fared on one device at one dtype."""

    kernel: str  # deform_sample | deform_sample_v2 | planes_to_rgb | rgb_to_planes
    device: str  # e.g. cuda:0
    dtype: str  # the arithmetic's dtype, and for conversions the plane format
    ok: bool
    path: str  # what runs: cupy, or the fallback (deform_sample, i.e. v1, torch, zimg)
    reason: str  # why it fell back ("" when ok)
    max_error: float | None  # against the reference, in the tolerance's units
    tolerance: float
    ms: float  # the check's cost

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


_RESULTS: dict[tuple[str, str, str], KernelCheck] = {}
_LOCK = threading.Lock()


def results() -> list[KernelCheck]:
    """Every check this process ran, in order."""
    with _LOCK:
        return list(_RESULTS.values())


def verify(kernel: str, device: torch.device, dtype: str, run: Callable[[], torch.Tensor],
           reference: Callable[[], torch.Tensor], tolerance: float, fallback: str,
           relative: bool = True) -> KernelCheck:
    """Run ``run`` (the kernel) and ``reference`` on the same inputs and judge: any exception (compile,
    launch) or a difference beyond ``tolerance`` (relative to the reference's largest magnitude, or
    absolute) means ``fallback``."""
    t0 = time.perf_counter()
    err: float | None = None
    try:
        got = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        want = reference()
        diff = (got.double().cpu() - want.double().cpu()).abs()
        err = float(diff.max()) if torch.isfinite(diff).all() else float("inf")
        if relative:
            err /= max(float(want.double().abs().max()), 1e-12)
        reason = "" if err <= tolerance else f"disagrees with its reference by {err:.3g} (tolerance {tolerance:g})"
    except Exception as e:  # noqa: BLE001 - a kernel that fails in any way must not be used
        text = str(e).strip().splitlines()
        reason = f"{type(e).__name__}: {text[0] if text else 'no message'}"
    ok = reason == ""
    return KernelCheck(kernel, str(device), dtype, ok, "cupy" if ok else fallback, reason, err, tolerance,
                       round((time.perf_counter() - t0) * 1e3, 2))


def _once(key: tuple[str, str, str], check: Callable[[], KernelCheck]) -> KernelCheck:
    """``check()``'s result for ``key``, computed on first use; a failure is said once on stderr (and a
    missing CuPy once per process, not per kernel)."""
    with _LOCK:
        if key in _RESULTS:
            return _RESULTS[key]
        have_cupy = cupy_available()
        if have_cupy:
            say(f"edvr: checking the kernel {key[0]} on {key[1]} ({key[2]}) against its reference (first use)\n")
        result = _RESULTS[key] = check()
        first_without_cupy = not have_cupy and sum(not r.ok for r in _RESULTS.values()) == 1
    if not have_cupy:
        if first_without_cupy:
            say(f"edvr: {CUPY_MISSING}; the CUDA kernels cannot run, so the torch path runs instead\n")
    elif not result.ok:
        say(f"edvr: the CUDA kernel {result.kernel} on {result.device} ({result.dtype}) failed its self-check "
            f"({result.reason}); using {result.path} instead\n")
    return result


# ---- deformable sampling ---------------------------------------------------------------------------

def deform_sample_case(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """(x, offset, mask): 2 images, 8 channels in 2 groups, 7×9, 3×3 kernel; offsets of up to ±12 px
    (far past every border), a quarter of them zero (integer and exact border positions)."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(2, 8, 7, 9, generator=g)
    offset = torch.randn(2, 2 * 2 * 9, 7, 9, generator=g) * 4
    offset[torch.rand(offset.shape, generator=g) < 0.25] = 0
    offset[:, :, 0, :] = torch.randn(2, 36, 9, generator=g).clamp(-3, 3) * 4  # the top row: past y = -1
    mask = torch.rand(2, 2 * 9, 7, 9, generator=g)
    return tuple(t.to(device, dtype) for t in (x, offset, mask))


def check_deform_sample(device: torch.device, dtype: torch.dtype) -> KernelCheck:
    """The deformable-sampling kernel against ``sample_columns_torch`` (once per device and dtype)."""
    name = DTYPE_NAMES[dtype]
    geometry = ((3, 3), (1, 1), (1, 1), (1, 1))

    def check() -> KernelCheck:
        x, offset, mask = deform_sample_case(device, dtype)
        return verify("deform_sample", device, name, lambda: sample_columns_cuda(x, offset, mask, *geometry),
                      lambda: sample_columns_torch(x, offset, mask, *geometry), TOLERANCE[dtype], "torch")

    return _once(("deform_sample", str(device), name), check)


def deform_sample_v2_case(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """(x, offset, logit) as the model hands them to v2: 2 images of 16 channels in 2 groups (8 per
    group: the kernel's widest vector loads), 7×9, channels-last; offsets (up to ±12 px, a quarter
    exactly zero) and logits as slices of one channels-last ``conv_offset``-like output."""
    g = torch.Generator().manual_seed(4321)
    x = torch.randn(2, 16, 7, 9, generator=g)
    out = torch.randn(2, 3 * 2 * 9, 7, 9, generator=g) * 4
    out[:, :36][torch.rand(2, 36, 7, 9, generator=g) < 0.25] = 0
    x, out = (t.to(device, dtype).contiguous(memory_format=torch.channels_last) for t in (x, out))
    return x, out[:, :36], out[:, 36:]


def check_deform_sample_v2(device: torch.device, dtype: torch.dtype) -> KernelCheck:
    """The v2 sampling kernel against ``sample_pixel_columns_torch`` (once per device and dtype)."""
    name = DTYPE_NAMES[dtype]
    geometry = ((3, 3), (1, 1), (1, 1), (1, 1))

    def check() -> KernelCheck:
        x, offset, logit = deform_sample_v2_case(device, dtype)
        return verify("deform_sample_v2", device, name,
                      lambda: sample_pixel_columns_cuda(x, offset, logit, *geometry),
                      lambda: sample_pixel_columns_torch(x, offset, logit, *geometry), TOLERANCE[dtype],
                      "deform_sample")

    return _once(("deform_sample_v2", str(device), name), check)


# ---- frame conversion ------------------------------------------------------------------------------

def _size(fmt: vs.VideoFormat) -> tuple[int, int]:
    """(width, height) of the test frames: chroma planes of 9 × 5 samples (odd, so edges and an odd
    chroma row count), the luma as subsampling makes it (18 × 10 for 4:2:0, 36 × 5 for 4:1:1)."""
    return 9 << fmt.subsampling_w, 5 << fmt.subsampling_h


def _random_planes(fmt: vs.VideoFormat, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    w, h = _size(fmt)
    shapes = [(h, w)] + [(h >> fmt.subsampling_h, w >> fmt.subsampling_w)] * 2
    if fmt.sample_type == vs.INTEGER:
        dtype = np.uint8 if fmt.bytes_per_sample == 1 else np.uint16
        return [rng.integers(0, 1 << fmt.bits_per_sample, s, dtype=dtype) for s in shapes]
    dtype = np.float16 if fmt.bits_per_sample == 16 else np.float32
    low = [0.0] + [-0.5 if fmt.color_family == vs.YUV else 0.0] * 2
    return [(rng.random(s) + lo).astype(dtype) for s, lo in zip(shapes, low)]


def _clip_of(planes: list[np.ndarray], fmt: vs.VideoFormat, props: dict[str, int]) -> vs.VideoNode:
    blank = core.std.BlankClip(format=fmt.id, width=planes[0].shape[1], height=planes[0].shape[0], length=1)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), planes[p])
        for k, v in props.items():
            out.props[k] = v
        return out

    return core.std.ModifyFrame(blank, blank, fill)



def _colour_props(fmt: vs.VideoFormat, colour: Colour) -> dict[str, int]:
    if fmt.color_family == vs.RGB:
        return {}
    return {"_Matrix": colour.matrix, "_Range": colour.range_prop, "_ChromaLocation": colour.chromaloc}


def _planes_of(frame: vs.VideoFrame) -> torch.Tensor:
    """A frame's planes, flattened and concatenated (planes may differ in size), as float64."""
    return torch.cat([torch.from_numpy(np.asarray(frame[p]).astype(np.float64)).flatten() for p in range(3)])


def check_planes_to_rgb(fmt: vs.VideoFormat, colour: Colour, device: torch.device, dtype: torch.dtype) -> KernelCheck:
    """Planes of ``fmt`` → RGB (``dtype``) on ``device`` against zimg's RGBS (once per format, colour, dtype)."""
    name = f"{fmt.name}→{DTYPE_NAMES[dtype]}"
    pf = PlaneFormat.for_colour(fmt, colour)

    def check() -> KernelCheck:
        planes = _random_planes(fmt, 1)

        def run() -> torch.Tensor:
            up = [torch.from_numpy(np.ascontiguousarray(p)).to(device) for p in planes]
            return planes_to_rgb(up, pf, dtype).flatten()

        def reference() -> torch.Tensor:
            clip = _clip_of(planes, fmt, _colour_props(fmt, colour))
            resize = core.resize.Point if fmt.color_family == vs.RGB else core.resize.Bilinear
            return _planes_of(resize(clip, format=vs.RGBS).get_frame(0))

        return verify("planes_to_rgb", device, name, run, reference, CONVERT_TOLERANCE[dtype], "zimg",
                      relative=False)

    return _once(("planes_to_rgb", str(device), f"{name} {colour}"), check)


def check_rgb_to_planes(fmt: vs.VideoFormat, colour: Colour, device: torch.device, dtype: torch.dtype) -> KernelCheck:
    """RGB (``dtype``) on ``device`` → planes of ``fmt`` against zimg (once per format, colour, dtype)."""
    name = f"{DTYPE_NAMES[dtype]}→{fmt.name}"
    pf = PlaneFormat.for_colour(fmt, colour)

    def check() -> KernelCheck:
        g = torch.Generator().manual_seed(2)
        w, h = _size(fmt)
        rgb = torch.rand(3, h, w, generator=g).to(dtype)  # what the kernel is given, rounded

        def run() -> torch.Tensor:
            planes = rgb_to_planes(rgb.to(device), pf)
            if pf.sample == "u16":
                planes = [p.view(torch.int16).int() & 0xFFFF for p in planes]
            return torch.cat([p.double().flatten() for p in planes])

        def reference() -> torch.Tensor:
            src = _clip_of([p.float().numpy() for p in rgb], core.get_video_format(vs.RGBS), {})
            if fmt.color_family == vs.RGB:
                return _planes_of(core.resize.Point(src, format=fmt.id).get_frame(0))
            return _planes_of(core.resize.Bilinear(src, format=fmt.id, matrix=colour.matrix, range=colour.range_prop,
                                                   chromaloc=colour.chromaloc).get_frame(0))

        if fmt.sample_type == vs.INTEGER:
            tolerance = CONVERT_TOLERANCE["codes"]
        else:
            tolerance = CONVERT_TOLERANCE["half planes"] if fmt.bits_per_sample == 16 else CONVERT_TOLERANCE[dtype]
        return verify("rgb_to_planes", device, name, run, reference, tolerance, "zimg", relative=False)

    return _once(("rgb_to_planes", str(device), f"{name} {colour}"), check)
