"""kernels/convert.cu, CPU-emulated, against VapourSynth's own zimg (core.resize.Bilinear)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import vapoursynth as vs

from edvr_vs.convert import PlaneFormat
from edvr_vs.frame_io import clip_from_frames
from tests.conftest import demo_frames
from tests.kernels.harness import build

core = vs.core
NP = {"u8": np.uint8, "u16": np.uint16, "f16": np.float16, "f32": np.float32}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return build("emulate_convert", tmp_path_factory.mktemp("cv"))


def ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def kernel_to_rgb(lib, planes: list[np.ndarray], pf: PlaneFormat) -> np.ndarray:
    h, w = planes[0].shape
    rgb = np.full((3, h, w), np.nan, np.float32)
    ys, yo, cs, co = pf.normalisation()
    kr, kb = pf.kr_kb
    sx, sy = pf.shifts
    fn = getattr(lib, f"host_planes_{pf.sample}_to_rgb_f32")
    ints = (ctypes.c_int * 5)(w, h, pf.ssw, pf.ssh, int(pf.is_yuv))
    floats = (ctypes.c_float * 8)(sx, sy, ys, yo, cs, co, kr, kb)
    fn(ctypes.c_uint((h * w + 255) // 256), ctypes.c_uint(256), *map(ptr, planes), ptr(rgb), ints, floats)
    return rgb


def kernel_from_rgb(lib, rgb: np.ndarray, pf: PlaneFormat) -> list[np.ndarray]:
    _, h, w = rgb.shape
    planes = [np.zeros(s, NP[pf.sample]) for s in pf.plane_shapes(w, h)]
    ys, yo, cs, co, peak = pf.quantisation()
    kr, kb = pf.kr_kb
    name = f"host_rgb_f32_to_planes_{pf.sample}"
    getattr(lib, name + "_luma")(ctypes.c_uint((h * w + 255) // 256), ctypes.c_uint(256), ptr(rgb),
                                 *map(ptr, planes), (ctypes.c_int * 5)(w, h, pf.ssw, pf.ssh, int(pf.is_yuv)),
                                 (ctypes.c_float * 7)(ys, yo, cs, co, peak, kr, kb))
    if pf.is_yuv and (pf.ssw or pf.ssh):
        sx, sy = pf.shifts
        n = (h >> pf.ssh) * (w >> pf.ssw)
        getattr(lib, name + "_chroma")(ctypes.c_uint((n + 255) // 256), ctypes.c_uint(256), ptr(rgb),
                                       ptr(planes[1]), ptr(planes[2]), (ctypes.c_int * 4)(w, h, pf.ssw, pf.ssh),
                                       (ctypes.c_float * 7)(sx, sy, cs, co, peak, kr, kb))
    return planes


def planes_of(frame) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.asarray(frame[p])) for p in range(3)]


# (format, matrix, full range, chroma location, size)
CASES = [
    (vs.YUV420P8, 1, False, 0, (48, 32)),
    (vs.YUV420P8, 6, False, 1, (34, 22)),
    (vs.YUV420P10, 9, False, 1, (18, 10)),
    (vs.YUV420P8, 1, False, 0, (2, 2)),
    (vs.YUV422P10, 1, False, 0, (30, 12)),
    (vs.YUV422P8, 5, True, 1, (26, 14)),
    (vs.YUV444P16, 9, True, 0, (21, 13)),
    (vs.YUV444P8, 6, False, 0, (1, 1)),
    (vs.YUV420PS, 1, False, 1, (20, 14)),
    (vs.YUV444PH, 6, False, 0, (15, 9)),
    (vs.RGB24, 0, True, 0, (17, 11)),
    (vs.RGB48, 0, True, 0, (9, 7)),
    (vs.RGBH, 0, True, 0, (9, 7)),
    (vs.RGBS, 0, True, 0, (5, 3)),
]


def case_id(c):
    fmt, m, full, loc, (w, h) = c
    return f"{core.get_video_format(fmt).name}-m{m}-{'full' if full else 'lim'}-loc{loc}-{w}x{h}"


def source_rgb(size) -> vs.VideoNode:
    w, h = size
    frames = demo_frames(1, (max(w, 4), max(h, 4)))[..., :h, :w].contiguous()
    return clip_from_frames(frames)


def zimg_args(fmt, matrix, full, loc, suffix=""):
    if core.get_video_format(fmt).color_family == vs.RGB:
        return {}
    return {f"matrix{suffix}": matrix, f"range{suffix}": int(vs.RANGE_FULL if full else vs.RANGE_LIMITED),
            f"chromaloc{suffix}": loc}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_planes_to_rgb_matches_zimg(lib, case):
    fmt, matrix, full, loc, size = case
    clip = core.resize.Bilinear(source_rgb(size), format=fmt, **zimg_args(fmt, matrix, full, loc))
    expected = core.resize.Bilinear(clip, format=vs.RGBS, **zimg_args(fmt, matrix, full, loc, "_in"))
    pf = PlaneFormat.of(clip.format, matrix=matrix or 1, full_range=full, chromaloc=loc)
    ours = kernel_to_rgb(lib, planes_of(clip.get_frame(0)), pf)
    ref = np.stack(planes_of(expected.get_frame(0)))
    assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_rgb_to_planes_matches_zimg(lib, case):
    fmt, matrix, full, loc, size = case
    rgb = source_rgb(size)
    expected = core.resize.Bilinear(rgb, format=fmt, **zimg_args(fmt, matrix, full, loc))
    pf = PlaneFormat.of(expected.format, matrix=matrix or 1, full_range=full, chromaloc=loc)
    ours = kernel_from_rgb(lib, np.stack(planes_of(rgb.get_frame(0))), pf)
    for p, ref in enumerate(planes_of(expected.get_frame(0))):
        diff = np.abs(ours[p].astype(np.float64) - ref.astype(np.float64)).max()
        tol = {"u8": 1, "u16": 1, "f16": 2e-3, "f32": 1e-4}[pf.sample]
        assert diff <= tol, (p, diff)


def test_out_of_range_values_are_clamped(lib):
    pf = PlaneFormat.of(core.get_video_format(vs.YUV420P8), matrix=1, full_range=False)
    rgb = np.full((3, 4, 4), 2.0, np.float32)
    rgb[:, :2] = -1.0
    y, u, v = kernel_from_rgb(lib, rgb, pf)
    assert y[:2].max() == 0 and y[2:].min() == 255
