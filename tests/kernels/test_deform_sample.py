"""kernels/deform_sample.cu: NVRTC-compiled for every target, CPU-emulated against the reference."""

from __future__ import annotations

import ctypes

import pytest
import torch

from edvr_vs.kernels import THREADS
from edvr_vs.nn.dcn import deform_conv2d, output_size, sample_columns_torch
from tests.kernels.harness import build, ints

SUFFIX = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return build("emulate_deform_sample", tmp_path_factory.mktemp("ds"))


def emulated_columns(lib, x, offset, mask, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)):
    """Run the kernel's CPU build with the same arguments the CuPy launcher passes."""
    b, c, h, w = x.shape
    ho, wo = offset.shape[-2:]
    g = mask.shape[1] // (k[0] * k[1])
    x_nhwc = x.permute(0, 2, 3, 1).contiguous()
    offset, mask = offset.contiguous(), mask.contiguous()
    cols = torch.full((b, ho * wo, g * k[0] * k[1] * (c // g)), float("nan"), dtype=x.dtype)
    total = b * g * ho * wo
    fn = getattr(lib, f"host_deform_sample_{SUFFIX[x.dtype]}")
    fn(ctypes.c_uint((total + THREADS - 1) // THREADS), ctypes.c_uint(THREADS),
       ctypes.c_void_p(x_nhwc.data_ptr()), ctypes.c_void_p(offset.data_ptr()), ctypes.c_void_p(mask.data_ptr()),
       ctypes.c_void_p(cols.data_ptr()),
       ints([b, h, w, c, ho, wo, g, k[0], k[1], stride[0], stride[1], padding[0], padding[1],
             dilation[0], dilation[1]]))
    return cols


def inputs(b, c, h, w, g, scale, seed=0, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), mask_value=None):
    gen = torch.Generator().manual_seed(seed)
    ho, wo = output_size(h, w, k, stride, padding, dilation)
    kk = k[0] * k[1]
    x = torch.randn(b, c, h, w, generator=gen)
    offset = torch.randn(b, 2 * g * kk, ho, wo, generator=gen) * scale
    mask = (torch.rand(b, g * kk, ho, wo, generator=gen) if mask_value is None
            else torch.full((b, g * kk, ho, wo), float(mask_value)))
    return x, offset, mask


SHAPES = [
    (1, 8, 1, 1, 1, 1.0),
    (1, 16, 3, 5, 8, 2.0),
    (2, 64, 37, 23, 8, 3.0),
    (1, 16, 6, 7, 2, 100.0),  # offsets far outside
    (1, 8, 9, 11, 1, 0.0),  # integer positions only
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fp32_matches_reference(lib, shape):
    x, offset, mask = inputs(*shape)
    ours = emulated_columns(lib, x, offset, mask)
    ref = sample_columns_torch(x, offset, mask, (3, 3), (1, 1), (1, 1), (1, 1))
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-6


@pytest.mark.parametrize("stride,padding,dilation", [((2, 2), (1, 1), (1, 1)), ((1, 2), (2, 0), (2, 1))])
def test_general_stride_padding_dilation(lib, stride, padding, dilation):
    x, offset, mask = inputs(2, 16, 11, 9, 8, 1.5, stride=stride, padding=padding, dilation=dilation)
    ours = emulated_columns(lib, x, offset, mask, (3, 3), stride, padding, dilation)
    ref = sample_columns_torch(x, offset, mask, (3, 3), stride, padding, dilation)
    assert (ours - ref).abs().max().item() <= 1e-6


@pytest.mark.parametrize("mask_value", [0.0, 1.0])
def test_zero_and_one_masks(lib, mask_value):
    x, offset, mask = inputs(1, 16, 7, 9, 8, 2.0, mask_value=mask_value)
    ours = emulated_columns(lib, x, offset, mask)
    ref = sample_columns_torch(x, offset, mask, (3, 3), (1, 1), (1, 1), (1, 1))
    assert (ours - ref).abs().max().item() <= 1e-6
    if mask_value == 0.0:
        assert torch.count_nonzero(ours) == 0


def test_footprint_is_exact(lib):
    """Taps half a row up: output row r reads input rows r-2 .. r+1 (those inside) and no others."""
    x, offset, mask = inputs(1, 8, 4, 4, 1, 0.0)
    offset[:, 0::2] = -0.5
    assert torch.isfinite(emulated_columns(lib, x, offset, mask)).all()
    x[0, :, 3, :] = float("nan")
    ours = emulated_columns(lib, x, offset, mask).view(1, 4, 4, 9, 8)
    assert torch.isfinite(ours[:, :2]).all()
    assert torch.isnan(ours[:, 2:]).any(dim=(0, 2, 3, 4)).all()
    ref = sample_columns_torch(x, offset, mask, (3, 3), (1, 1), (1, 1), (1, 1)).view(1, 4, 4, 9, 8)
    assert torch.equal(torch.isnan(ours), torch.isnan(ref))


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_half_storage_fp32_math(lib, dtype, tol):
    x, offset, mask = inputs(2, 64, 13, 17, 8, 2.5)
    x, offset, mask = x.to(dtype), offset.to(dtype), mask.to(dtype)
    ours = emulated_columns(lib, x, offset, mask)
    assert ours.dtype == dtype
    # Reference: fp32 math on the same rounded inputs, rounded once at the end.
    ref = sample_columns_torch(x.float(), offset.float(), mask.float(), (3, 3), (1, 1), (1, 1), (1, 1)).to(dtype)
    diff = (ours.float() - ref.float()).abs()
    assert (diff <= tol * ref.float().abs().clamp(min=1)).all()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_cupy_backend_on_gpu(dtype, tol):
    import torchvision

    x, offset, mask = inputs(2, 64, 45, 80, 8, 3.0)
    weight = torch.randn(64, 64, 3, 3) / 24
    bias = torch.randn(64)
    ref = torchvision.ops.deform_conv2d(x, offset, weight, bias, 1, 1, 1, mask)
    dev = torch.device("cuda")
    ours = deform_conv2d(*(t.to(dev, dtype) for t in (x, offset, weight, bias)), 1, 1, 1, mask.to(dev, dtype),
                         backend="cupy")
    assert ours.dtype == dtype
    assert (ours.float().cpu() - ref).abs().max().item() <= tol * ref.abs().max().item()
