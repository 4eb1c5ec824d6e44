"""kernels/deform_sample.cu: NVRTC-compiled for every target, CPU-emulated against the reference."""

from __future__ import annotations

import ctypes

import pytest
import torch

from edvr_vs.kernel_loader import THREADS
from edvr_vs.nn.dcn import deform_conv2d, output_size
from tests.kernels.harness import build, ints

SUFFIX = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return build("emulate_deform_sample", tmp_path_factory.mktemp("ds"))


def reference(x, offset, mask, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)) -> torch.Tensor:
    """Columns from torchvision itself: a deformable conv whose one-hot weight copies (c, k) to row c*K + k."""
    import torchvision

    x, offset, mask = x.float(), offset.float(), mask.float()
    c, kk = x.shape[1], k[0] * k[1]
    eye = torch.eye(c * kk).view(c * kk, c, k[0], k[1])
    out = torchvision.ops.deform_conv2d(x, offset, eye, None, stride, padding, dilation, mask)
    return out.flatten(2)


def close(ours: torch.Tensor, ref: torch.Tensor, rtol: float = 1e-6) -> bool:
    """Within fp32 rounding: the kernel follows torchvision's arithmetic step by step."""
    return bool(((ours.float() - ref).abs() <= rtol * ref.abs().clamp(min=1)).all())


def emulated_columns(lib, x, offset, mask, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)):
    """Run the kernel's CPU build with the same arguments the CuPy launcher passes."""
    b, c, h, w = x.shape
    ho, wo = offset.shape[-2:]
    g = mask.shape[1] // (k[0] * k[1])
    x, offset, mask = x.contiguous(), offset.contiguous(), mask.contiguous()
    cols = torch.full((b, c * k[0] * k[1], ho * wo), float("nan"), dtype=x.dtype)
    total = b * g * ho * wo
    fn = getattr(lib, f"host_deform_sample_{SUFFIX[x.dtype]}")
    fn(ctypes.c_uint((total + THREADS - 1) // THREADS), ctypes.c_uint(THREADS),
       ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(offset.data_ptr()), ctypes.c_void_p(mask.data_ptr()),
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
    ref = reference(x, offset, mask)
    assert ours.shape == ref.shape
    assert close(ours, ref)


@pytest.mark.parametrize("stride,padding,dilation", [((2, 2), (1, 1), (1, 1)), ((1, 2), (2, 0), (2, 1))])
def test_general_stride_padding_dilation(lib, stride, padding, dilation):
    x, offset, mask = inputs(2, 16, 11, 9, 8, 1.5, stride=stride, padding=padding, dilation=dilation)
    ours = emulated_columns(lib, x, offset, mask, (3, 3), stride, padding, dilation)
    assert close(ours, reference(x, offset, mask, (3, 3), stride, padding, dilation))


@pytest.mark.parametrize("mask_value", [0.0, 1.0])
def test_zero_and_one_masks(lib, mask_value):
    x, offset, mask = inputs(1, 16, 7, 9, 8, 2.0, mask_value=mask_value)
    ours = emulated_columns(lib, x, offset, mask)
    assert close(ours, reference(x, offset, mask))
    if mask_value == 0.0:
        assert torch.count_nonzero(ours) == 0


def test_footprint_is_exact(lib):
    """Taps half a row up: output row r reads input rows r-2 .. r+1 (those inside) and no others."""
    x, offset, mask = inputs(1, 8, 4, 4, 1, 0.0)
    offset[:, 0::2] = -0.5
    assert torch.isfinite(emulated_columns(lib, x, offset, mask)).all()
    x[0, :, 3, :] = float("nan")
    ours = emulated_columns(lib, x, offset, mask).view(1, 8, 9, 4, 4)
    assert torch.isfinite(ours[..., :2, :]).all()
    assert torch.isnan(ours[..., 2:, :]).any(dim=(0, 1, 2, 4)).all()


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_half_storage_fp32_math(lib, dtype, tol):
    x, offset, mask = inputs(2, 64, 13, 17, 8, 2.5)
    x, offset, mask = x.to(dtype), offset.to(dtype), mask.to(dtype)
    ours = emulated_columns(lib, x, offset, mask)
    assert ours.dtype == dtype
    # Reference: fp32 math on the same rounded inputs, rounded once at the end.
    ref = reference(x, offset, mask).to(dtype)
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
