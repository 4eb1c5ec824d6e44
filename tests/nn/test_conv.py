"""``Conv.run``: the fused oneDNN path against the plain ops, for every activation and add it takes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edvr_vs.nn.conv import Conv, set_fused


def plain(conv: Conv, x, act, add):
    out = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    out = out if add is None else out + add
    return {"relu": F.relu, "lrelu": lambda t: F.leaky_relu(t, 0.1), None: lambda t: t}[act](out)


@pytest.mark.parametrize("act", [None, "relu", "lrelu"])
@pytest.mark.parametrize("with_add", [False, True])
@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (1, 1)])
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_fused_equals_plain_ops_in_fp32(act, with_add, kernel, stride, memory_format):
    gen = torch.Generator().manual_seed(7)
    conv = Conv(12, 20, kernel, stride, kernel // 2).to(memory_format=memory_format)
    x = torch.randn(2, 12, 9, 14, generator=gen).contiguous(memory_format=memory_format)
    ho, wo = (9 + 2 * (kernel // 2) - kernel) // stride + 1, (14 + 2 * (kernel // 2) - kernel) // stride + 1
    add = torch.randn(2, 20, ho, wo, generator=gen) if with_add else None
    set_fused(conv, True)
    with torch.inference_mode():
        got = conv.run(x, act, add)
        want = plain(conv, x, act, add)
    if memory_format == torch.channels_last:  # the model's layout: the same oneDNN kernel, bitwise
        assert torch.equal(got, want)
    else:  # NCHW: oneDNN may pick another kernel for the fused primitive
        assert (got - want).abs().max() <= 1e-6 * want.abs().max()
    assert got.is_contiguous(memory_format=memory_format)


def test_bf16_fused_is_within_rounding():
    """bf16: the activation sees the fp32 accumulator instead of its rounding, nothing more."""
    gen = torch.Generator().manual_seed(8)
    conv = Conv(16, 16, 3, 1, 1).to(torch.bfloat16, memory_format=torch.channels_last)
    x = torch.randn(1, 16, 10, 12, generator=gen).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    set_fused(conv, True)
    with torch.inference_mode():
        got, want = conv.run(x, "lrelu").float(), plain(conv, x, "lrelu", None).float()
    assert ((got - want).abs() <= 2 ** -7 * want.abs() + 1e-6).all()


def test_training_and_unfused_run_the_plain_ops():
    conv = Conv(4, 4, 3, 1, 1)
    set_fused(conv, True)
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    out = conv.run(x, "lrelu", add=torch.ones(1, 4, 6, 6))
    out.sum().backward()  # the fused op has no gradient: training must not reach it
    assert x.grad is not None and conv.weight.grad is not None
    set_fused(conv, False)
    assert not conv.fused
