"""Deformable sampling, the first half of a modulated deformable convolution, in two layouts.

Both take the input ``x`` (b, C, h, w), the offsets (b, 2·G·K, ho, wo) ordered (group, kernel
position, (dy, dx)) and the modulation (b, G·K, ho, wo) ordered (group, kernel position), and
return the columns that one GEMM with the weight turns into the convolution:

channel-major (v1)  ``(b, C·K, P)``, row ``c·K + k``: ``weight.view(O, C·K) @ columns``; the mask
                    is given after its sigmoid. ``sample_columns_torch`` (reference, any device)
                    and ``sample_columns_cuda`` (``kernels/deform_sample.cu``).
pixel-major (v2)    ``(b, P, K·C)``, column ``k·C + c``: ``columns.view(b·P, K·C) @ weight`` laid out
                    as (kh, kw, C, O), whose output is channels-last; the mask is given as *logits*
                    (the sigmoid is part of the sampling), and offsets and logits may be any strided
                    views, such as slices of ``conv_offset``'s channels-last output.
                    ``sample_pixel_columns_torch`` (reference) and ``sample_pixel_columns_cuda``
                    (``kernels/deform_sample_v2.cu``).

P = ho·wo, K = kh·kw. Positions follow ``torchvision.ops.deform_conv2d``: a sample at or beyond one
pixel outside the image (``y <= -1``, ``y >= h``, ``x <= -1``, ``x >= w``) is zero, and inside that
band each of the four bilinear taps that falls outside counts as zero. Positions, weights and the
mask product are fp32 at least; the columns come back in ``x``'s dtype.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from edvr_vs.kernel_loader import DTYPE_SUFFIX, launch

Pair = tuple[int, int]
VECTOR_BYTES = 16  # the v2 kernel's widest load: 8 fp16/bf16 or 4 fp32 channels


@functools.lru_cache(maxsize=64)
def _base_grid(h: int, w: int, ho: int, wo: int, kernel_size: Pair, stride: Pair, padding: Pair,
               dilation: Pair, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Undeformed positions normalised for ``grid_sample(align_corners=False)``
    (``x_norm = (2x + 1)/w - 1``): x as (K, 1, wo), y as (K, ho, 1). Kept per shape (the engine's
    shapes are fixed; the CPU's DCN asks once per row chunk), made as ordinary tensors even inside
    ``inference_mode``, so that training may use them too."""
    kh, kw = kernel_size
    k = kh * kw
    with torch.inference_mode(False), torch.no_grad():
        rows = torch.arange(ho, device=device, dtype=dtype) * stride[0] - padding[0]
        cols = torch.arange(wo, device=device, dtype=dtype) * stride[1] - padding[1]
        ki = (torch.arange(kh, device=device, dtype=dtype) * dilation[0]).repeat_interleave(kw)
        kj = (torch.arange(kw, device=device, dtype=dtype) * dilation[1]).repeat(kh)
        base_x = (kj.view(k, 1, 1) + cols.view(1, 1, wo)) * (2.0 / w) + (1.0 / w - 1)
        base_y = (ki.view(k, 1, 1) + rows.view(1, ho, 1)) * (2.0 / h) + (1.0 / h - 1)
    return base_x, base_y


def sample_columns_torch(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: Pair,
                         stride: Pair, padding: Pair, dilation: Pair,
                         rows: tuple[int, int] | None = None) -> torch.Tensor:
    """Channel-major columns ``(b, C·K, P)`` through ``F.grid_sample`` (bilinear, zero padding).

    Zero padding gives torchvision's rule: each tap outside the image is zero. Normalising positions
    for ``grid_sample`` moves them by at most a few ulps of ``w``. The grid is built from the offsets'
    own layout; ``grid_sample`` and the mask product run on NCHW operands (measured fastest on the CPU).

    Args:
        x: input, ``(b, C, h, w)``, any memory format.
        offset: ``(b, 2·G·K, ho, wo)``, in pixels, (dy, dx) per kernel position.
        mask: modulation, ``(b, G·K, ho, wo)`` (already through a sigmoid).
        rows: only output rows ``[r0, r1)``: columns ``(b, C·K, (r1 - r0)·wo)``, equal to that
            slice of the whole.
    """
    b, c, h, w = x.shape
    k = kernel_size[0] * kernel_size[1]
    ho, wo = offset.shape[-2:]
    r0, r1 = rows or (0, ho)
    g = mask.shape[1] // k
    out_dtype = x.dtype
    dtype = torch.promote_types(x.dtype, torch.float32)
    base_x, base_y = _base_grid(h, w, ho, wo, kernel_size, stride, padding, dilation, x.device, dtype)
    off = offset[..., r0:r1, :].unflatten(1, (g, k, 2))  # (b, G, K, (dy, dx), r, wo)
    grid = torch.stack([torch.add(base_x, off[:, :, :, 1], alpha=2.0 / w),  # (x, y) last, as grid_sample reads
                        torch.add(base_y[:, r0:r1], off[:, :, :, 0], alpha=2.0 / h)], dim=-1)
    x = x.to(dtype, memory_format=torch.contiguous_format)
    mask = mask[..., r0:r1, :].to(dtype, memory_format=torch.contiguous_format)
    p = (r1 - r0) * wo
    sampled = F.grid_sample(x.view(b * g, c // g, h, w), grid.view(b * g, k * (r1 - r0), wo, 2),
                            mode="bilinear", padding_mode="zeros", align_corners=False)  # (b·G, C/G, K·r, wo)
    sampled = sampled.view(b, g, c // g, k, p).mul_(mask.view(b, g, 1, k, p))
    return sampled.view(b, c * k, p).to(out_dtype)


def sample_pixel_columns_torch(x: torch.Tensor, offset: torch.Tensor, logit: torch.Tensor, kernel_size: Pair,
                               stride: Pair, padding: Pair, dilation: Pair) -> torch.Tensor:
    """Pixel-major columns ``(b, P, K·C)`` from mask *logits*: the v2 kernel's reference (the
    channel-major columns of ``sigmoid(logit)`` in fp32, reordered)."""
    b, c = x.shape[:2]
    k = kernel_size[0] * kernel_size[1]
    mask = torch.sigmoid(logit.to(torch.promote_types(logit.dtype, torch.float32)))
    cols = sample_columns_torch(x, offset, mask, kernel_size, stride, padding, dilation)
    return cols.view(b, c, k, -1).permute(0, 3, 2, 1).reshape(b, -1, k * c)


def _kernel_shape(kernel: str, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                  kernel_size: Pair) -> tuple[int, ...]:
    """(b, C, h, w, kh, kw, ho, wo, G) of a kernel launch; TypeError for a dtype the kernels lack."""
    if x.dtype not in DTYPE_SUFFIX:
        raise TypeError(f"{kernel}: dtype {x.dtype} not supported (fp32, fp16, bf16)")
    kh, kw = kernel_size
    return (*x.shape, kh, kw, *offset.shape[-2:], mask.shape[1] // (kh * kw))


def sample_columns_cuda(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: Pair,
                        stride: Pair, padding: Pair, dilation: Pair) -> torch.Tensor:
    """``kernels/deform_sample.cu``: same contract as ``sample_columns_torch`` (operands copied to NCHW)."""
    b, c, h, w, kh, kw, ho, wo, g = _kernel_shape("deform_sample", x, offset, mask, kernel_size)
    x = x.contiguous()
    offset = offset.to(x.dtype).contiguous()
    mask = mask.to(x.dtype).contiguous()
    cols = torch.empty(b, c * kh * kw, ho * wo, device=x.device, dtype=x.dtype)
    launch("deform_sample.cu", f"deform_sample_{DTYPE_SUFFIX[x.dtype]}", b * g * ho * wo, [x, offset, mask, cols],
           [x.dtype] * 4, [b, h, w, c, ho, wo, g, kh, kw, *stride, *padding, *dilation])
    return cols


def vector_width(x: torch.Tensor, groups: int) -> int:
    """Channels per vector load in the v2 kernel: the widest V of at most 16 bytes that divides the
    channels of a group and keeps every tap's address aligned (x's pointer included)."""
    per_group = x.shape[1] // groups
    v = VECTOR_BYTES // x.element_size()
    while v > 1 and (per_group % v or x.data_ptr() % (v * x.element_size())):
        v //= 2
    return v


def sample_pixel_columns_cuda(x: torch.Tensor, offset: torch.Tensor, logit: torch.Tensor, kernel_size: Pair,
                              stride: Pair, padding: Pair, dilation: Pair) -> torch.Tensor:
    """``kernels/deform_sample_v2.cu``: same contract as ``sample_pixel_columns_torch``. ``x`` is read
    channels-last (copied only if it is not), offsets and logits through their strides (copied
    only if their dtype differs from ``x``'s)."""
    b, c, h, w, kh, kw, ho, wo, g = _kernel_shape("deform_sample_v2", x, offset, logit, kernel_size)
    x = x.contiguous(memory_format=torch.channels_last)
    offset, logit = offset.to(x.dtype), logit.to(x.dtype)
    v = vector_width(x, g)
    cols = torch.empty(b, ho * wo, kh * kw * c, device=x.device, dtype=x.dtype)
    launch("deform_sample_v2.cu", f"deform_sample_v2_{DTYPE_SUFFIX[x.dtype]}_v{v}", b * ho * wo * (c // v),
           [x, offset, logit, cols], [x.dtype] * 4,
           [b, h, w, c, ho, wo, g, kh, kw, *stride, *padding, *dilation, *offset.stride(), *logit.stride()],
           layouts=["channels_last", "strided", "strided", "contiguous"])
    return cols
