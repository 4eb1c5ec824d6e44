"""Modulated deformable convolution (DCNv2) with swappable sampling backends.

A deformable convolution is split into two steps that every backend shares:

1. *sampling*: bilinear samples of the input at the deformed kernel positions,
   times the modulation mask, written as an im2col buffer ``(b, C * K, ho * wo)``
   whose row ``c * K + k`` is input channel c at kernel position k; that is the
   order of ``weight.view(O, C * K)``, so step 2 needs no reordering.
2. *GEMM*: ``weight.view(O, C * K) @ columns`` plus bias, straight into
   ``(b, O, ho, wo)``; ``torch.matmul`` (cuBLAS on the GPU).

Backends implement step 1 only:

``torch``     pure torch through ``F.grid_sample`` (any device, any float dtype); the
              reference for every other backend;
``cupy``      a CUDA raw kernel (``kernels/deform_sample.cu``) on CUDA tensors.

Conventions are those of ``torchvision.ops.deform_conv2d`` and BasicSR's
``DCNv2Pack``: ``offset`` has ``2 * G * K`` channels ordered (group, kernel
position, (dy, dx)); ``mask`` has ``G * K`` channels ordered (group, kernel
position); a sample whose position lies at or beyond one pixel outside the
image (``y <= -1``, ``y >= h``, ``x <= -1`` or ``x >= w``) is zero, and inside
that band each of the four bilinear taps that falls outside the image counts
as zero.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from edvr_vs.kernel_loader import DTYPE_SUFFIX, launch

Pair = tuple[int, int]
BackendName = Literal["auto", "torch", "cupy"]
# sampler(x, offset, mask, kernel_size, stride, padding, dilation) -> columns
Sampler = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Pair, Pair, Pair, Pair], torch.Tensor]


def _pair(v: int | tuple[int, int], name: str) -> Pair:
    if isinstance(v, int):
        v = (v, v)
    if len(v) != 2 or not all(isinstance(i, int) for i in v):
        raise ValueError(f"deform_conv2d: {name!r} must be an int or two ints, got {v!r}")
    return (int(v[0]), int(v[1]))


def output_size(h: int, w: int, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    """Output (height, width) of a convolution over an ``h`` × ``w`` input."""
    ho = (h + 2 * padding[0] - dilation[0] * (kernel_size[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kernel_size[1] - 1) - 1) // stride[1] + 1
    return ho, wo


def sample_columns_torch(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    kernel_size: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
) -> torch.Tensor:
    """Pure-torch deformable sampling through ``F.grid_sample`` (bilinear, zero padding).

    Zero padding gives torchvision's rule: each tap outside the image is zero, so a
    position at or beyond one pixel outside is zero. Positions are normalised for
    ``align_corners=False`` (``x_norm = dx · 2/w + (2x + 1)/w - 1``), which moves them
    by at most a few ulps of ``w``. Positions, bilinear weights and the mask product are
    computed in fp32 at least (fp16/bf16 could not even address a pixel past 256), like
    the CUDA kernel; the columns come back in ``x``'s dtype.

    Args:
        x: input, ``(b, C, h, w)``.
        offset: ``(b, 2 * G * K, ho, wo)``, in pixels, (dy, dx) per kernel position.
        mask: modulation, ``(b, G * K, ho, wo)`` (already through a sigmoid).

    Returns:
        columns ``(b, C * K, ho * wo)``, row ``c * K + k``, dtype of ``x``.
    """
    b, c, h, w = x.shape
    kh, kw = kernel_size
    k = kh * kw
    ho, wo = offset.shape[-2:]
    g = mask.shape[1] // k
    device, out_dtype = x.device, x.dtype
    dtype = torch.promote_types(x.dtype, torch.float32)

    # Undeformed positions (exact integers) normalised: (K, 1, wo) for x, (K, ho, 1) for y.
    rows = torch.arange(ho, device=device, dtype=dtype) * stride[0] - padding[0]
    cols = torch.arange(wo, device=device, dtype=dtype) * stride[1] - padding[1]
    ki = (torch.arange(kh, device=device, dtype=dtype) * dilation[0]).repeat_interleave(kw)
    kj = (torch.arange(kw, device=device, dtype=dtype) * dilation[1]).repeat(kh)
    base_x = (kj.view(k, 1, 1) + cols.view(1, 1, wo)) * (2.0 / w) + (1.0 / w - 1)
    base_y = (ki.view(k, 1, 1) + rows.view(1, ho, 1)) * (2.0 / h) + (1.0 / h - 1)
    # grid (b, G, K, ho, wo, (x, y)), straight from the offsets' own layout.
    off = offset.unflatten(1, (g, k, 2))  # (b, G, K, (dy, dx), ho, wo)
    grid = torch.stack([torch.add(base_x, off[:, :, :, 1], alpha=2.0 / w),
                        torch.add(base_y, off[:, :, :, 0], alpha=2.0 / h)], dim=-1)
    # grid_sample and the mask product run fastest on NCHW-contiguous operands (measured).
    x = x.to(dtype, memory_format=torch.contiguous_format)
    mask = mask.to(dtype, memory_format=torch.contiguous_format)
    sampled = F.grid_sample(x.view(b * g, c // g, h, w), grid.view(b * g, k * ho, wo, 2),
                            mode="bilinear", padding_mode="zeros", align_corners=False)  # (b*G, C/G, K*ho, wo)
    sampled = sampled.view(b, g, c // g, k, ho * wo).mul_(mask.view(b, g, 1, k, ho * wo))
    return sampled.view(b, c * k, ho * wo).to(out_dtype)


def sample_columns_cuda(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """``kernels/deform_sample.cu``: same contract as ``edvr_vs.nn.dcn.sample_columns_torch``."""
    if x.dtype not in DTYPE_SUFFIX:
        raise TypeError(f"deform_sample: dtype {x.dtype} not supported (fp32, fp16, bf16)")
    b, c, h, w = x.shape
    kh, kw = kernel_size
    ho, wo = offset.shape[-2:]
    g = mask.shape[1] // (kh * kw)
    x = x.contiguous()
    offset = offset.to(x.dtype).contiguous()
    mask = mask.to(x.dtype).contiguous()
    cols = torch.empty(b, c * kh * kw, ho * wo, device=x.device, dtype=x.dtype)
    launch("deform_sample.cu", f"deform_sample_{DTYPE_SUFFIX[x.dtype]}", b * g * ho * wo, [x, offset, mask, cols],
           [x.dtype] * 4, [b, h, w, c, ho, wo, g, kh, kw, *stride, *padding, *dilation])
    return cols


_SAMPLERS: dict[str, Sampler] = {"torch": sample_columns_torch, "cupy": sample_columns_cuda}


def resolve_backend(backend: BackendName, device: torch.device) -> str:
    """``auto`` → ``cupy`` on CUDA, ``torch`` elsewhere; anything else is checked."""
    if backend == "auto":
        return "cupy" if device.type == "cuda" else "torch"
    if backend not in _SAMPLERS:
        raise ValueError(f"deform_conv2d: 'backend' must be one of auto, {', '.join(_SAMPLERS)}, got {backend!r}")
    if backend == "cupy" and device.type != "cuda":
        raise ValueError(f"deform_conv2d: backend 'cupy' needs CUDA tensors, got device {device}")
    return backend


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Pair = 1,
    padding: int | Pair = 0,
    dilation: int | Pair = 1,
    mask: torch.Tensor | None = None,
    backend: BackendName = "auto",
) -> torch.Tensor:
    """Modulated deformable convolution, same signature and result as torchvision's.

    Args:
        x: ``(b, C, h, w)``. weight: ``(O, C, kh, kw)``. bias: ``(O,)`` or None.
        offset: ``(b, 2 * G * kh * kw, ho, wo)``; G (deformable groups) follows from it.
        mask: ``(b, G * kh * kw, ho, wo)``, or None for plain DCNv1 (all ones).

    Returns:
        ``(b, O, ho, wo)``.
    """
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    b, c, h, w = x.shape
    o, cw, kh, kw = weight.shape
    k = kh * kw
    if cw != c:
        raise ValueError(f"deform_conv2d: weight expects {cw} input channels, x has {c} (groups are not supported)")
    if offset.shape[1] % (2 * k):
        raise ValueError(f"deform_conv2d: offset has {offset.shape[1]} channels, not a multiple of 2*{k}")
    g = offset.shape[1] // (2 * k)
    if c % g:
        raise ValueError(f"deform_conv2d: {c} input channels do not split into {g} deformable groups")
    ho, wo = output_size(h, w, (kh, kw), stride, padding, dilation)
    if tuple(offset.shape) != (b, 2 * g * k, ho, wo):
        raise ValueError(f"deform_conv2d: offset shape {tuple(offset.shape)}, expected {(b, 2 * g * k, ho, wo)}")
    if mask is None:
        mask = x.new_ones(b, g * k, ho, wo)
    elif tuple(mask.shape) != (b, g * k, ho, wo):
        raise ValueError(f"deform_conv2d: mask shape {tuple(mask.shape)}, expected {(b, g * k, ho, wo)}")

    sampler = _SAMPLERS[resolve_backend(backend, x.device)]
    columns = sampler(x, offset, mask, (kh, kw), stride, padding, dilation)  # (b, C·K, P)
    # (P, C·K) @ (C·K, O) per image, bias fused: the result is (b, ho, wo, O) in memory,
    # i.e. channels-last, the layout the network's convolutions run in.
    w_t = weight.reshape(o, c * k).t()
    if bias is None:
        out = torch.matmul(columns.transpose(1, 2), w_t)
    elif b == 1:
        out = torch.addmm(bias, columns[0].t(), w_t).unsqueeze(0)
    else:
        out = torch.baddbmm(bias.view(1, 1, o), columns.transpose(1, 2), w_t.expand(b, c * k, o))
    return out.view(b, ho, wo, o).permute(0, 3, 1, 2)


class DCNv2Pack(nn.Module):
    """BasicSR's ``DCNv2Pack``: offsets and mask come from a conv over a second feature map.

    ``conv_offset`` maps the offset features to ``3 * G * kh * kw`` channels,
    chunked into (o1, o2, mask): ``offset = cat(o1, o2)``, ``mask = sigmoid``.
    Parameter names (``weight``, ``bias``, ``conv_offset.*``) match BasicSR's.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Pair = 3,
        stride: int | Pair = 1,
        padding: int | Pair = 1,
        dilation: int | Pair = 1,
        deformable_groups: int = 8,
        backend: BackendName = "auto",
        check_offsets: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.deformable_groups = deformable_groups
        self.backend: BackendName = backend
        self.check_offsets = check_offsets
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.conv_offset = nn.Conv2d(
            in_channels, deformable_groups * 3 * kh * kw, self.kernel_size,
            self.stride, self.padding, self.dilation, bias=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform weights as BasicSR initialises them; zero offsets and 0.5 masks."""
        n = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(n)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def offsets_and_mask(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feat`` (b, C, h, w) → offset (b, 2GK, h, w), mask (b, GK, h, w).

        BasicSR chunks the conv's output into thirds (o1, o2, mask) and concatenates
        o1 and o2 again: that is its first two thirds, taken here as they are.
        """
        out = self.conv_offset(feat)
        n = out.shape[1] // 3
        return out[:, :2 * n], torch.sigmoid(out[:, 2 * n:])

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(feat)
        if self.check_offsets:  # a host synchronisation: opt-in, as in BasicSR's training logs
            mean = float(offset.abs().mean())
            if mean > 50:
                warnings.warn(f"DCNv2Pack: offset mean is {mean:.1f}, larger than 50", stacklevel=2)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding,
                             self.dilation, mask, backend=self.backend)
