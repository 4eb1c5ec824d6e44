"""Modulated deformable convolution (DCNv2): sampling (``edvr_vs.nn.sampling``), then one GEMM.

Backends (``DCNv2Pack.backend``, ``EDVR.set_dcn``):

``torch``     pure torch through ``F.grid_sample`` (any device, any float dtype); the reference;
``cupy_v1``   ``kernels/deform_sample.cu``: channel-major columns from NCHW copies of the operands;
``cupy_v2``   ``kernels/deform_sample_v2.cu``: reads the channels-last input and ``conv_offset``'s
              output in place (offsets and mask logits as strided views, sigmoid in the kernel) and
              writes pixel-major columns, whose GEMM output is channels-last;
``cupy``      on each new shape, v2 and v1 are timed (``edvr_vs.autotune``) and the faster one kept;
              without autotuning v2;
``auto``      ``cupy`` on CUDA, ``torch`` elsewhere;
``export``    ``torch``'s arithmetic behind one operator, ``edvr_vs::deform_conv2d``, that ``torch.export``
              records as it is (instead of tracing the sampling), so that the ONNX export writes it as
              the standard ``DeformConv`` (``edvr_vs.onnx_export``).

Conventions are those of ``torchvision.ops.deform_conv2d`` and BasicSR's ``DCNv2Pack``: ``offset``
has ``2·G·K`` channels ordered (group, kernel position, (dy, dx)); the mask ``G·K`` channels ordered
(group, kernel position).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import nn

from edvr_vs.autotune import choose
from edvr_vs.nn.sampling import (Pair, sample_columns_cuda, sample_columns_torch, sample_pixel_columns_cuda)

BackendName = Literal["auto", "torch", "cupy", "cupy_v1", "cupy_v2", "export"]
BACKENDS = ("auto", "torch", "cupy", "cupy_v1", "cupy_v2", "export")


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


def resolve_backend(backend: BackendName, device: torch.device) -> str:
    """``auto`` → ``cupy`` on CUDA, ``torch`` elsewhere; anything else is checked."""
    if backend not in BACKENDS:
        raise ValueError(f"deform_conv2d: 'backend' must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "cupy" if device.type == "cuda" else "torch"
    if backend.startswith("cupy") and device.type != "cuda":
        raise ValueError(f"deform_conv2d: backend {backend!r} needs CUDA tensors, got device {device}")
    return backend


def _check(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor,
           stride: Pair, padding: Pair, dilation: Pair) -> int:
    """Shapes of a deformable convolution's operands, checked; returns G (deformable groups)."""
    b, c, h, w = x.shape
    _, cw, kh, kw = weight.shape
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
    if mask is not None and tuple(mask.shape) != (b, g * k, ho, wo):
        raise ValueError(f"deform_conv2d: mask shape {tuple(mask.shape)}, expected {(b, g * k, ho, wo)}")
    return g


def _gemm_channel_major(columns: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                        bias: torch.Tensor | None, ho: int, wo: int) -> torch.Tensor:
    """``weight.view(O, C·K) @ columns (b, C·K, P)`` + bias → (b, O, ho, wo) in ``x``'s memory format
    (row-major operands: the CPU's GEMM runs about 1.4× faster so than on the transposed columns)."""
    b = columns.shape[0]
    o = weight.shape[0]
    w2 = weight.reshape(o, -1)
    if bias is None:
        out = torch.matmul(w2, columns)
    elif b == 1:
        out = torch.addmm(bias.view(o, 1), w2, columns[0]).unsqueeze(0)
    else:
        out = torch.baddbmm(bias.view(1, o, 1), w2.expand(b, *w2.shape), columns)
    out = out.view(b, o, ho, wo)
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return out.contiguous(memory_format=torch.channels_last) if cl else out


def _gemm_pixel_major(columns: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      ho: int, wo: int) -> torch.Tensor:
    """``columns (b, P, K·C)`` @ weight as (K·C, O) + bias: one GEMM for the batch, output channels-last."""
    b, p, kc = columns.shape
    o = weight.shape[0]
    w2 = weight.permute(2, 3, 1, 0).reshape(kc, o)
    flat = columns.view(b * p, kc)
    out = torch.mm(flat, w2) if bias is None else torch.addmm(bias, flat, w2)
    return out.view(b, ho, wo, o).permute(0, 3, 1, 2)


# Output pixels per step of the CPU's deformable convolution: whole rows, about this many (at 180×320,
# 4 to 16 rows of 320 were equally fast; much smaller steps spend their time in Python).
CHUNK_PIXELS = 2560


def _dcn_torch_in_row_chunks(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor | None, geometry: tuple) -> torch.Tensor:
    """The ``torch`` backend in inference: sampling, mask product and GEMM a few output rows at a time
    (``CHUNK_PIXELS``), each chunk's columns still in cache when the GEMM reads them, written straight
    into a channels-last output. The whole-image computation's values (the GEMM's rows are independent;
    its blocking may round differently); about 1.6× faster on the CPU at 180×320 (148 → 90 ms per DCN)."""
    b, o, (ho, wo) = x.shape[0], weight.shape[0], offset.shape[-2:]
    w2t = weight.reshape(o, -1).t()
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    dtype = x.dtype  # of the columns and the GEMM (bf16 GEMMs run on AMX)
    # grid_sample's layout and arithmetic (fp32 at least), once for every chunk
    x = x.to(torch.promote_types(dtype, torch.float32), memory_format=torch.contiguous_format)
    out = torch.empty(b, ho, wo, o, device=x.device, dtype=dtype)
    rows = max(1, CHUNK_PIXELS // wo)
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        columns = sample_columns_torch(x, offset, mask, *geometry, rows=(r0, r1)).to(dtype)
        for i in range(b):
            dst = out[i, r0:r1].view((r1 - r0) * wo, o)
            if bias is None:
                torch.mm(columns[i].t(), w2t, out=dst)
            else:
                torch.addmm(bias, columns[i].t(), w2t, out=dst)
    out = out.permute(0, 3, 1, 2)
    return out if channels_last else out.contiguous()


def _torch_backend(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None, geometry: tuple) -> torch.Tensor:
    """Row chunks in inference; the whole image at once where autograd records (training)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, offset, mask, weight)):
        return _gemm_channel_major(sample_columns_torch(x, offset, mask, *geometry), x, weight, bias,
                                   *offset.shape[-2:])
    return _dcn_torch_in_row_chunks(x, offset, mask, weight, bias, geometry)


def _sigmoid_nchw(logit: torch.Tensor) -> torch.Tensor:
    """``sigmoid(logit)`` as a contiguous (NCHW) tensor. Gathering the strided logits first and then
    taking the sigmoid of contiguous memory is 3× faster on the CPU than either the sigmoid straight
    into an NCHW buffer or the sigmoid in the logits' layout and then the copy (measured)."""
    return torch.sigmoid(logit.contiguous())


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Pair = 1,
    padding: int | Pair = 0,
    dilation: int | Pair = 1,
    mask: torch.Tensor | None = None,
    backend: Literal["auto", "torch", "cupy", "cupy_v1"] = "auto",
) -> torch.Tensor:
    """Modulated deformable convolution, same signature and result as torchvision's (mask after its
    sigmoid). Backends ``torch`` and ``cupy_v1`` (``cupy`` and ``auto``: v1 on CUDA); the model's own call, with
    mask logits, is ``deform_conv2d_logits``.

    Args:
        x: ``(b, C, h, w)``. weight: ``(O, C, kh, kw)``. bias: ``(O,)`` or None.
        offset: ``(b, 2·G·kh·kw, ho, wo)``; G (deformable groups) follows from it.
        mask: ``(b, G·kh·kw, ho, wo)``, or None for plain DCNv1 (all ones).

    Returns:
        ``(b, O, ho, wo)``.
    """
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    g = _check(x, offset, mask, weight, stride, padding, dilation)
    name = resolve_backend(backend, x.device)
    if name not in ("torch", "cupy", "cupy_v1"):
        raise ValueError(f"deform_conv2d: backend {backend!r} is the model's own call (deform_conv2d_logits)")
    kernel_size = tuple(weight.shape[-2:])
    if mask is None:
        mask = x.new_ones(x.shape[0], g * kernel_size[0] * kernel_size[1], *offset.shape[-2:])
    geometry = (kernel_size, stride, padding, dilation)
    if name == "torch":
        return _torch_backend(x, offset, mask, weight, bias, geometry)
    return _gemm_channel_major(sample_columns_cuda(x, offset, mask, *geometry), x, weight, bias, *offset.shape[-2:])


def deform_conv2d_logits(
    x: torch.Tensor,
    offset: torch.Tensor,
    logit: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    backend: BackendName = "auto",
    autotune: bool = True,
) -> torch.Tensor:
    """``deform_conv2d`` with the mask given as logits (``mask = sigmoid(logit)``), as ``DCNv2Pack``
    calls it: offsets and logits may be strided views of ``conv_offset``'s output. Every backend;
    ``cupy`` times v2 against v1 on each new shape when ``autotune``. Returns ``(b, O, ho, wo)``,
    channels-last where ``x`` is (NCHW otherwise, except from v2)."""
    g = _check(x, offset, logit, weight, stride, padding, dilation)
    name = resolve_backend(backend, x.device)
    kernel_size = tuple(weight.shape[-2:])
    ho, wo = offset.shape[-2:]
    geometry = (kernel_size, stride, padding, dilation)

    def channel_major(sampler) -> torch.Tensor:
        return _gemm_channel_major(sampler(x, offset, _sigmoid_nchw(logit), *geometry), x, weight, bias, ho, wo)

    def v2() -> torch.Tensor:
        return _gemm_pixel_major(sample_pixel_columns_cuda(x, offset, logit, *geometry), weight, bias, ho, wo)

    if name == "torch":
        return _torch_backend(x, offset, _sigmoid_nchw(logit), weight, bias, geometry)
    if name == "export":
        return deform_conv2d_op(x, offset, torch.sigmoid(logit), weight, bias, list(stride), list(padding),
                                list(dilation), g)
    if name == "cupy_v1":
        return channel_major(sample_columns_cuda)
    if name == "cupy_v2" or not autotune:
        return v2()
    key = ("deform_conv2d", str(x.device), x.dtype, tuple(x.shape), tuple(weight.shape), geometry)
    return choose(key, {"v2": v2, "v1": lambda: channel_major(sample_columns_cuda)})


@torch.library.custom_op("edvr_vs::deform_conv2d", mutates_args=())
def deform_conv2d_op(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor, stride: list[int], padding: list[int], dilation: list[int],
                     groups: int) -> torch.Tensor:
    """``deform_conv2d`` (torch backend, mask after its sigmoid) as one operator of torch's: the
    ``export`` backend's call, which ``torch.export`` keeps whole. Shapes as ``deform_conv2d``'s;
    ``groups``: G, the deformable groups (which the offsets' shape implies: an attribute for ONNX)."""
    return deform_conv2d(x, offset, weight, bias, tuple(stride), tuple(padding), tuple(dilation), mask,
                         backend="torch")


@deform_conv2d_op.register_fake
def _deform_conv2d_shape(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor, stride: list[int], padding: list[int], dilation: list[int],
                         groups: int) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0], *offset.shape[-2:])


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
        autotune: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.deformable_groups = deformable_groups
        self.backend: BackendName = backend
        self.check_offsets = check_offsets
        self.autotune = autotune
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

    def offsets_and_logits(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feat`` (b, C, h, w) → offset (b, 2GK, h, w), mask logits (b, GK, h, w): views of one conv output.

        BasicSR chunks the conv's output into thirds (o1, o2, mask) and concatenates o1 and o2
        again: that is its first two thirds, taken here as they are; its mask is their sigmoid.
        """
        out = self.conv_offset(feat)
        n = out.shape[1] // 3
        return out[:, :2 * n], out[:, 2 * n:]

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        offset, logit = self.offsets_and_logits(feat)
        if self.check_offsets:  # a host synchronisation: opt-in, as in BasicSR's training logs
            mean = float(offset.abs().mean())
            if mean > 50:
                warnings.warn(f"DCNv2Pack: offset mean is {mean:.1f}, larger than 50", stacklevel=2)
        return deform_conv2d_logits(x, offset, logit, self.weight, self.bias, self.stride, self.padding,
                                    self.dilation, self.backend, self.autotune)
