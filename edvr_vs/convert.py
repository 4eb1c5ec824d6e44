"""VapourSynth planes ↔ normalised RGB: the facts of each format, and the CUDA path.

``PlaneFormat`` holds everything ``kernels/convert.cu`` needs to know about a clip's
format (subsampling, sample type, bit depth, range, matrix, chroma siting) and
computes the kernel's normalisation constants. The arithmetic is zimg's
(``core.resize.Bilinear``): see the header of ``kernels/convert.cu``. On the CPU
the filter uses zimg itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import vapoursynth as vs

from edvr_vs.colour import MATRICES, Colour
from edvr_vs.kernel_loader import DTYPE_SUFFIX, launch

SAMPLE_TORCH = {"u8": torch.uint8, "u16": torch.uint16, "f16": torch.float16, "f32": torch.float32}


@dataclass(frozen=True)
class PlaneFormat:
    is_yuv: bool
    ssw: int  # log2 horizontal chroma subsampling
    ssh: int
    sample: str  # u8 | u16 | f16 | f32
    bits: int
    full_range: bool
    matrix: int  # _Matrix value (ignored for RGB)
    chroma_center: bool  # horizontal siting: False = left (chromaloc 0), True = centre (1)

    @classmethod
    def of(cls, fmt: vs.VideoFormat, *, matrix: int = 1, full_range: bool | None = None,
           chromaloc: int = 0) -> PlaneFormat:
        if fmt.color_family not in (vs.RGB, vs.YUV):
            raise ValueError(f"convert: {fmt.name} is neither RGB nor YUV")
        if fmt.sample_type == vs.FLOAT:
            sample = "f16" if fmt.bits_per_sample == 16 else "f32"
        else:
            sample = "u8" if fmt.bytes_per_sample == 1 else "u16"
        is_yuv = fmt.color_family == vs.YUV
        if is_yuv and matrix not in MATRICES:
            raise ValueError(f"convert: matrix {matrix} is not one of {sorted(MATRICES)}")
        if chromaloc not in (0, 1):
            raise ValueError(f"convert: chroma location {chromaloc} is not left (0) or center (1)")
        return cls(is_yuv=is_yuv, ssw=fmt.subsampling_w, ssh=fmt.subsampling_h, sample=sample,
                   bits=fmt.bits_per_sample, full_range=(not is_yuv) if full_range is None else full_range,
                   matrix=matrix, chroma_center=chromaloc == 1)

    @classmethod
    def for_colour(cls, fmt: vs.VideoFormat, colour: Colour) -> PlaneFormat:
        """``fmt`` with ``colour``'s matrix, range and siting (which RGB has none of)."""
        if fmt.color_family == vs.RGB:
            return cls.of(fmt)
        return cls.of(fmt, matrix=colour.matrix, full_range=colour.full_range, chromaloc=colour.chromaloc)

    @property
    def kr_kb(self) -> tuple[float, float]:
        """The matrix's luma coefficients (BT.709's for RGB, where they are unused)."""
        m = MATRICES.get(self.matrix, MATRICES[1])
        return m.kr, m.kb

    @property
    def shifts(self) -> tuple[float, float]:
        """Chroma sample 0's position in luma pixels (x, y); 4:2:0 is centred vertically."""
        return (0.5 if self.chroma_center and self.ssw else 0.0), (0.5 if self.ssh else 0.0)

    def normalisation(self) -> tuple[float, float, float, float]:
        """(y_scale, y_offset, c_scale, c_offset): value = (sample - offset) * scale."""
        if self.sample in ("f16", "f32"):
            return 1.0, 0.0, 1.0, 0.0
        k = float(1 << (self.bits - 8))
        peak = float((1 << self.bits) - 1)
        if self.full_range:
            return 1 / peak, 0.0, 1 / peak, float(1 << (self.bits - 1))
        return 1 / (219 * k), 16 * k, 1 / (224 * k), 128 * k

    def quantisation(self) -> tuple[float, float, float, float, float]:
        """(y_scale, y_offset, c_scale, c_offset, max): sample = value * scale + offset, clamped."""
        ys, yo, cs, co = self.normalisation()
        peak = float((1 << self.bits) - 1) if self.sample in ("u8", "u16") else 0.0
        return 1 / ys, yo, 1 / cs, co, peak

    def plane_shapes(self, width: int, height: int) -> list[tuple[int, int]]:
        return [(height, width)] + [(height >> self.ssh, width >> self.ssw)] * 2


def planes_to_rgb(planes: list[torch.Tensor], pf: PlaneFormat, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Three contiguous CUDA planes → RGB ``(3, h, w)`` in ``dtype`` (fp32 or fp16), on torch's stream."""
    h, w = planes[0].shape
    rgb = torch.empty(3, h, w, device=planes[0].device, dtype=dtype)
    ys, yo, cs, co = pf.normalisation()
    kr, kb = pf.kr_kb
    sx, sy = pf.shifts
    sample = SAMPLE_TORCH[pf.sample]
    launch("convert.cu", f"planes_{pf.sample}_to_rgb_{DTYPE_SUFFIX[dtype]}", h * w, [*planes, rgb],
           [sample] * 3 + [dtype], [w, h, pf.ssw, pf.ssh, int(pf.is_yuv)], floats=[sx, sy, ys, yo, cs, co, kr, kb])
    return rgb


def rgb_to_planes(rgb: torch.Tensor, pf: PlaneFormat) -> list[torch.Tensor]:
    """RGB ``(3, h, w)`` (fp32 or fp16, CUDA) → three contiguous planes of ``pf``'s sample type."""
    _, h, w = rgb.shape
    rgb = rgb.contiguous()
    planes = [torch.empty(s, device=rgb.device, dtype=SAMPLE_TORCH[pf.sample]) for s in pf.plane_shapes(w, h)]
    ys, yo, cs, co, peak = pf.quantisation()
    kr, kb = pf.kr_kb
    name = f"rgb_{DTYPE_SUFFIX[rgb.dtype]}_to_planes_{pf.sample}"
    sample = SAMPLE_TORCH[pf.sample]
    launch("convert.cu", name + "_luma", h * w, [rgb, *planes], [rgb.dtype] + [sample] * 3,
           [w, h, pf.ssw, pf.ssh, int(pf.is_yuv)], floats=[ys, yo, cs, co, peak, kr, kb])
    if pf.is_yuv and (pf.ssw or pf.ssh):
        sx, sy = pf.shifts
        launch("convert.cu", name + "_chroma", (h >> pf.ssh) * (w >> pf.ssw), [rgb, planes[1], planes[2]],
               [rgb.dtype, sample, sample], [w, h, pf.ssw, pf.ssh], floats=[sx, sy, cs, co, peak, kr, kb])
    return planes
