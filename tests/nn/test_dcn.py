"""The pure-torch DCN backend against torchvision.ops.deform_conv2d on awkward cases."""

from __future__ import annotations

import pytest
import torch
import torchvision

import edvr_vs.nn.dcn as dcn
from edvr_vs.nn.dcn import DCNv2Pack, deform_conv2d


def run_both(x, offset, mask, weight, bias, stride=1, padding=1, dilation=1):
    ours = deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask, backend="torch")
    ref = torchvision.ops.deform_conv2d(x, offset, weight, bias, (stride,) * 2, (padding,) * 2,
                                        (dilation,) * 2, mask)
    return ours, ref


def make(b, c, h, w, groups, out, dtype, scale, stride=1, padding=1, dilation=1, mask_value=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    ho = (h + 2 * padding - dilation * 2 - 1) // stride + 1
    wo = (w + 2 * padding - dilation * 2 - 1) // stride + 1
    x = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    weight = torch.randn(out, c, 3, 3, generator=g, dtype=dtype) / (3 * c ** 0.5)
    bias = torch.randn(out, generator=g, dtype=dtype)
    offset = torch.randn(b, 2 * groups * 9, ho, wo, generator=g, dtype=dtype) * scale
    if mask_value is None:
        mask = torch.rand(b, groups * 9, ho, wo, generator=g, dtype=dtype)
    else:
        mask = torch.full((b, groups * 9, ho, wo), float(mask_value), dtype=dtype)
    return x, offset, mask, weight, bias


CASES = [
    # (b, c, h, w, groups, out, scale)
    (1, 8, 1, 1, 1, 4, 1.0),
    (2, 8, 3, 5, 8, 6, 2.0),
    (1, 16, 37, 23, 8, 5, 3.0),
    (1, 16, 37, 23, 1, 5, 0.3),
    (2, 8, 6, 7, 2, 3, 100.0),  # offsets far outside the image
]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_matches_torchvision(case, dtype, tol):
    b, c, h, w, groups, out, scale = case
    x, offset, mask, weight, bias = make(b, c, h, w, groups, out, dtype, scale)
    ours, ref = run_both(x, offset, mask, weight, bias)
    assert ours.shape == ref.shape == (b, out, h, w)
    assert ours.dtype == dtype
    assert (ours - ref).abs().max().item() <= tol


@pytest.mark.parametrize("stride,padding,dilation", [(2, 1, 1), (1, 2, 2), (2, 0, 1), (3, 3, 2)])
def test_stride_padding_dilation(stride, padding, dilation):
    x, offset, mask, weight, bias = make(2, 16, 11, 9, 8, 4, torch.float64, 1.5, stride, padding, dilation)
    ours, ref = run_both(x, offset, mask, weight, bias, stride, padding, dilation)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-12


@pytest.mark.parametrize("mask_value", [0.0, 1.0])
def test_masks_zero_and_one(mask_value):
    x, offset, mask, weight, bias = make(1, 8, 9, 10, 8, 4, torch.float32, 2.0, mask_value=mask_value)
    ours, ref = run_both(x, offset, mask, weight, bias)
    assert (ours - ref).abs().max().item() <= 1e-5
    if mask_value == 0.0:  # every sample is masked out: only the bias remains
        assert torch.equal(ours, bias.view(1, -1, 1, 1).expand_as(ours))


def test_fractional_offsets_at_every_border():
    """Sample positions on and just beyond every edge and corner, including exactly -1 and h."""
    h, w = 5, 7
    x, _, mask, weight, bias = make(1, 8, h, w, 1, 3, torch.float64, 0.0)
    ho, wo = h, w
    ys = torch.arange(ho, dtype=torch.float64).view(ho, 1).expand(ho, wo)
    xs = torch.arange(wo, dtype=torch.float64).view(1, wo).expand(ho, wo)
    targets = [-1.0, -0.999, -0.5, -1e-9, 0.0, 0.25, h - 1.0, h - 0.75, h - 1e-9, float(h), h + 0.5]
    for target in targets:
        offset = torch.zeros(1, 18, ho, wo, dtype=torch.float64)
        for k in range(9):
            ki, kj = divmod(k, 3)
            # Kernel tap k of output pixel (y, x) samples row y - 1 + ki + dy: make it land on `target`.
            offset[0, 2 * k] = target - (ys - 1 + ki)
            offset[0, 2 * k + 1] = target * w / h - (xs - 1 + kj)
        ours, ref = run_both(x, offset, mask, weight, bias)
        assert (ours - ref).abs().max().item() <= 1e-12, target


def test_dcnv2pack_zero_offsets_is_plain_conv():
    """Fresh packs have zero offsets and mask 0.5: a plain conv at half weight."""
    torch.manual_seed(0)
    pack = DCNv2Pack(16, 8, 3, padding=1, deformable_groups=8).double()
    x = torch.randn(2, 16, 9, 6, dtype=torch.float64)
    feat = torch.randn(2, 16, 9, 6, dtype=torch.float64)
    expected = torch.nn.functional.conv2d(x, pack.weight * 0.5, pack.bias, 1, 1)
    assert torch.allclose(pack(x, feat), expected, atol=1e-12)


def test_bad_shapes_are_named():
    x, offset, mask, weight, bias = make(1, 8, 5, 5, 8, 4, torch.float32, 1.0)
    with pytest.raises(ValueError, match="offset shape"):
        deform_conv2d(x, offset[:, :, :4], weight, bias, 1, 1, 1, mask)
    with pytest.raises(ValueError, match="mask shape"):
        deform_conv2d(x, offset, weight, bias, 1, 1, 1, mask[:, :9])
    with pytest.raises(ValueError, match="backend"):
        deform_conv2d(x, offset, weight, bias, 1, 1, 1, mask, backend="magic")
    with pytest.raises(ValueError, match="needs CUDA"):
        deform_conv2d(x, offset, weight, bias, 1, 1, 1, mask, backend="cupy")


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_bf16_samples_where_fp32_does(memory_format):
    """bf16 storage, fp32 positions: far from the origin (x ≈ 600, where bf16 steps by 4 pixels)
    the samples still land where torchvision's do, and the output has the input's memory format."""
    x, offset, mask, weight, bias = make(2, 16, 5, 640, 8, 8, torch.float32, 0.7, seed=3)
    x, offset, mask, weight, bias = (t.to(torch.bfloat16) for t in (x, offset, mask, weight, bias))
    x = x.contiguous(memory_format=memory_format)
    ours = deform_conv2d(x, offset, weight, bias, 1, 1, 1, mask, backend="torch")
    ref = torchvision.ops.deform_conv2d(*(t.double() for t in (x, offset, weight, bias)), padding=(1, 1),
                                        mask=mask.double())
    assert ours.dtype == torch.bfloat16 and ours.is_contiguous(memory_format=memory_format)
    err = (ours.double() - ref).abs()
    assert err.max() <= 0.02 * ref.abs().max()
    assert err[..., 500:].mean() <= 2 * err[..., :100].mean() + 1e-3  # no worse far from the origin


@pytest.mark.parametrize("b,stride,chunk", [(1, 1, 2560), (2, 1, 23), (2, 2, 7), (1, 1, 1)])
def test_row_chunks_equal_the_whole_image(monkeypatch, b, stride, chunk):
    """The CPU's inference path (rows in chunks: uneven, one row, several images) against sampling the
    whole image and one GEMM (the training path)."""
    x, offset, mask, weight, bias = make(b, 16, 13, 11, 8, 6, torch.float32, 2.0, stride=stride)
    monkeypatch.setattr(dcn, "CHUNK_PIXELS", chunk)
    geometry = ((3, 3), (stride, stride), (1, 1), (1, 1))
    for memory_format in (torch.contiguous_format, torch.channels_last):
        xf = x.contiguous(memory_format=memory_format)
        with torch.inference_mode():
            chunked = dcn._dcn_torch_in_row_chunks(xf, offset, mask, weight, bias, geometry)
        whole = dcn._gemm_channel_major(dcn.sample_columns_torch(xf, offset, mask, *geometry), xf, weight, bias,
                                        *offset.shape[-2:])
        assert chunked.is_contiguous(memory_format=memory_format)
        assert (chunked - whole).abs().max() <= 1e-6 * whole.abs().max()
    x.requires_grad_(True)  # training: the whole-image path, which autograd can record
    deform_conv2d(x, offset, weight, bias, stride, 1, 1, mask, backend="torch").sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
