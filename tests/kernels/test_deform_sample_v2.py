"""kernels/deform_sample_v2.cu, CPU-emulated on the model's layouts, against torchvision and its torch reference.

The emulation runs the very source with the launcher's arguments: channels-last input, offsets and
mask logits as strided views (slices of one channels-last ``conv_offset`` output, or separate NCHW
tensors), the vector width the launcher picks (1, 2, 4 or 8 channels per load)."""

from __future__ import annotations

import ctypes

import pytest
import torch

from edvr_vs.kernel_loader import THREADS
from edvr_vs.nn.dcn import output_size
from edvr_vs.nn.sampling import sample_pixel_columns_torch, vector_width
from tests.kernels.harness import build, ints
from tests.kernels.test_deform_sample import SUFFIX, close, reference


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return build("emulate_deform_sample_v2", tmp_path_factory.mktemp("ds2"))


def emulated_pixel_columns(lib, x, offset, logit, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                           width=None):
    """The kernel's CPU build with the arguments ``sample_pixel_columns_cuda`` passes (``width``: force V)."""
    b, c, h, w = x.shape
    ho, wo = offset.shape[-2:]
    g = logit.shape[1] // (k[0] * k[1])
    x = x.contiguous(memory_format=torch.channels_last)
    offset, logit = offset.to(x.dtype), logit.to(x.dtype)
    v = width or vector_width(x, g)
    cols = torch.full((b, ho * wo, k[0] * k[1] * c), float("nan"), dtype=x.dtype)
    total = b * ho * wo * (c // v)
    fn = getattr(lib, f"host_deform_sample_v2_{SUFFIX[x.dtype]}_v{v}")
    fn(ctypes.c_uint((total + THREADS - 1) // THREADS), ctypes.c_uint(THREADS),
       ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(offset.data_ptr()), ctypes.c_void_p(logit.data_ptr()),
       ctypes.c_void_p(cols.data_ptr()),
       ints([b, h, w, c, ho, wo, g, k[0], k[1], *stride, *padding, *dilation, *offset.stride(), *logit.stride()]))
    return cols


def torchvision_pixel_columns(x, offset, logit, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)):
    """Independent reference: torchvision's columns of ``sigmoid(logit)``, reordered to (b, P, K·C)."""
    b, c = x.shape[:2]
    kk = k[0] * k[1]
    cols = reference(x, offset, torch.sigmoid(logit.float()), k, stride, padding, dilation)
    return cols.view(b, c, kk, -1).permute(0, 3, 2, 1).reshape(b, -1, kk * c)


def model_inputs(b, c, h, w, g, scale, seed=0, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                 sliced=True, logit_value=None):
    """x channels-last; offsets and logits as slices of one channels-last (b, 3·G·K, ho, wo) tensor
    (``sliced``) or as two separate NCHW tensors."""
    gen = torch.Generator().manual_seed(seed)
    ho, wo = output_size(h, w, k, stride, padding, dilation)
    kk = k[0] * k[1]
    x = torch.randn(b, c, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
    out = torch.randn(b, 3 * g * kk, ho, wo, generator=gen)
    out[:, :2 * g * kk] *= scale
    if logit_value is not None:
        out[:, 2 * g * kk:] = logit_value
    if sliced:
        out = out.contiguous(memory_format=torch.channels_last)
        return x, out[:, :2 * g * kk], out[:, 2 * g * kk:]
    return x, out[:, :2 * g * kk].contiguous(), out[:, 2 * g * kk:].contiguous()


SHAPES = [  # (b, c, h, w, g, offset scale)
    (1, 8, 1, 1, 1, 1.0),
    (1, 16, 3, 5, 8, 2.0),  # 2 channels per group: V = 2
    (2, 64, 37, 23, 8, 3.0),  # EDVR-M's grouping: V = 4 (fp32) / 8 (fp16)
    (1, 16, 6, 7, 2, 100.0),  # offsets far outside
    (1, 8, 9, 11, 1, 0.0),  # integer positions only
    (1, 24, 5, 9, 8, 1.5),  # 3 channels per group: V = 1
]


@pytest.mark.parametrize("sliced", [True, False], ids=["conv-offset-slices", "nchw"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fp32_matches_torchvision(lib, shape, sliced):
    x, offset, logit = model_inputs(*shape, sliced=sliced)
    ours = emulated_pixel_columns(lib, x, offset, logit)
    ref = torchvision_pixel_columns(x, offset, logit)
    assert ours.shape == ref.shape == (shape[0], shape[2] * shape[3], 9 * shape[1])
    assert close(ours, ref, 2e-6)
    # the grid_sample reference normalises positions, moving them by a few ulps: up to ~1e-5 relative
    assert close(sample_pixel_columns_torch(x, offset, logit, (3, 3), (1, 1), (1, 1), (1, 1)), ref, 3e-5)


@pytest.mark.parametrize("width", [1, 2, 4])
def test_every_vector_width_gives_the_same_columns(lib, width):
    x, offset, logit = model_inputs(2, 32, 7, 6, 8, 2.0, seed=5)
    assert vector_width(x, 8) == 4
    assert torch.equal(emulated_pixel_columns(lib, x, offset, logit, width=width),
                       emulated_pixel_columns(lib, x, offset, logit))


def test_the_launcher_narrows_vectors_for_unaligned_inputs():
    storage = torch.zeros(1 + 2 * 16 * 5 * 5)
    x = storage[1:].view(2, 5, 5, 16).permute(0, 3, 1, 2)  # channels-last, 4 bytes past an aligned address
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert vector_width(x, 2) == 1 and vector_width(x.clone(memory_format=torch.channels_last), 2) == 4
    assert vector_width(x.half().contiguous(memory_format=torch.channels_last), 2) == 8


@pytest.mark.parametrize("stride,padding,dilation", [((2, 2), (1, 1), (1, 1)), ((1, 2), (2, 0), (2, 1))])
def test_general_stride_padding_dilation(lib, stride, padding, dilation):
    x, offset, logit = model_inputs(2, 16, 11, 9, 8, 1.5, stride=stride, padding=padding, dilation=dilation)
    geometry = ((3, 3), stride, padding, dilation)
    assert close(emulated_pixel_columns(lib, x, offset, logit, *geometry),
                 torchvision_pixel_columns(x, offset, logit, *geometry), 2e-6)


def test_zero_masks_give_zero_columns_even_beside_nans(lib):
    """Logits of -1e4: sigmoid 0 exactly; the columns are exact zeros (a NaN in x must not turn into NaN·0)."""
    x, offset, logit = model_inputs(1, 16, 7, 9, 8, 2.0, logit_value=-1e4)
    assert torch.count_nonzero(emulated_pixel_columns(lib, x, offset, logit)) == 0


def test_footprint_is_exact(lib):
    """Taps half a row up: output row r reads input rows r-2 .. r+1 (those inside) and no others."""
    x, offset, logit = model_inputs(1, 8, 4, 4, 1, 0.0)
    offset[:, 0::2] = -0.5
    assert torch.isfinite(emulated_pixel_columns(lib, x, offset, logit)).all()
    x[0, :, 3, :] = float("nan")
    ours = emulated_pixel_columns(lib, x, offset, logit).view(1, 4, 4, 9, 8)  # (b, ho, wo, K, C)
    assert torch.isfinite(ours[:, :2]).all()
    assert torch.isnan(ours[:, 2:]).any(dim=(0, 2, 3, 4)).all()


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
@pytest.mark.parametrize("g", [1, 8])
def test_half_storage_fp32_math(lib, dtype, tol, g):
    x, offset, logit = model_inputs(2, 64, 13, 17, g, 2.5)
    x, offset, logit = (t.to(dtype) for t in (x, offset, logit))
    x = x.contiguous(memory_format=torch.channels_last)
    ours = emulated_pixel_columns(lib, x, offset, logit)
    assert ours.dtype == dtype
    ref = torchvision_pixel_columns(x, offset, logit).to(dtype)  # fp32 math on the rounded inputs, rounded once
    diff = (ours.float() - ref.float()).abs()
    assert (diff <= tol * ref.float().abs().clamp(min=1)).all()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_v2_kernel_on_gpu_matches_its_reference(dtype, tol):
    from edvr_vs.nn.sampling import sample_pixel_columns_cuda

    x, offset, logit = (t.to("cuda", dtype) for t in model_inputs(5, 64, 45, 80, 8, 3.0))
    x = x.contiguous(memory_format=torch.channels_last)
    geometry = ((3, 3), (1, 1), (1, 1), (1, 1))
    ours = sample_pixel_columns_cuda(x, offset, logit, *geometry)
    ref = sample_pixel_columns_torch(x.float(), offset.float(), logit.float(), *geometry)
    assert ours.dtype == dtype
    assert ((ours.float() - ref).abs() <= tol * ref.abs().clamp(min=1)).all()
