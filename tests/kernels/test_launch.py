"""Kernel arguments: raw device pointers, checked for device, dtype and contiguity before any launch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edvr_vs.kernel_loader import kernel_args


class FakeCudaTensor:
    """What ``kernel_args`` reads of a CUDA tensor (a CPU tensor's layout, a CUDA device)."""

    def __init__(self, t: torch.Tensor, index: int = 0) -> None:
        self.t, self.device = t, torch.device("cuda", index)
        self.dtype, self.shape = t.dtype, t.shape

    def is_contiguous(self, memory_format: torch.memory_format = torch.contiguous_format) -> bool:
        return self.t.is_contiguous(memory_format=memory_format)

    def stride(self) -> tuple[int, ...]:
        return self.t.stride()

    def data_ptr(self) -> int:
        return self.t.data_ptr()


def test_pointers_then_int32s_then_float32s():
    a, b = torch.zeros(4, 5), torch.zeros(3, dtype=torch.uint8)
    args = kernel_args([FakeCudaTensor(a), FakeCudaTensor(b)], [torch.float32, torch.uint8], 0, [7, -1], [0.5])
    assert [type(x) for x in args] == [np.uint64, np.uint64, np.int32, np.int32, np.float32]
    assert (int(args[0]), int(args[1])) == (a.data_ptr(), b.data_ptr())
    assert (int(args[2]), int(args[3]), float(args[4])) == (7, -1, 0.5)


@pytest.mark.parametrize("tensor,dtype,match", [
    (FakeCudaTensor(torch.zeros(4, 6)[:, ::2]), torch.float32, r"kernel argument 0: not contiguous \(strides \(6, 2\)"),
    (FakeCudaTensor(torch.zeros(4, 6).t()), torch.float32, "not contiguous"),
    (FakeCudaTensor(torch.zeros(4), index=1), torch.float32, r"on cuda:1, the launch is on cuda:0"),
    (torch.zeros(4), torch.float32, r"on cpu, the launch is on cuda:0"),
    (FakeCudaTensor(torch.zeros(4, dtype=torch.float16)), torch.bfloat16, "dtype torch.float16, the kernel reads torch.bfloat16"),
])
def test_bad_arguments_refused(tensor, dtype, match):
    with pytest.raises(ValueError, match=match):
        kernel_args([tensor], [dtype], 0, [], [])


def test_sampling_wrappers_check_their_operands_before_any_launch():
    """Both sampling kernels' wrappers on CPU tensors: the launcher refuses them (no GPU touched); a dtype
    the kernels lack is named; v2 receives x channels-last and the offsets as the strided slices."""
    from edvr_vs.nn.sampling import sample_columns_cuda, sample_pixel_columns_cuda

    x = torch.randn(1, 16, 5, 6)
    out = torch.randn(1, 3 * 2 * 9, 5, 6).contiguous(memory_format=torch.channels_last)
    geometry = ((3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="kernel argument 0: on cpu"):
        sample_columns_cuda(x, out[:, :36], out[:, 36:], *geometry)
    with pytest.raises(ValueError, match="kernel argument 0: on cpu"):
        sample_pixel_columns_cuda(x, out[:, :36], out[:, 36:], *geometry)
    for wrapper, name in ((sample_columns_cuda, "deform_sample"), (sample_pixel_columns_cuda, "deform_sample_v2")):
        with pytest.raises(TypeError, match=f"{name}: dtype torch.float64 not supported"):
            wrapper(x.double(), out[:, :36], out[:, 36:], *geometry)


def test_layouts_are_checked():
    cl = FakeCudaTensor(torch.randn(1, 4, 3, 3).contiguous(memory_format=torch.channels_last))
    kernel_args([cl], [torch.float32], 0, [], [], ["channels_last"])
    kernel_args([cl], [torch.float32], 0, [], [], ["strided"])
    with pytest.raises(ValueError, match="not contiguous"):
        kernel_args([cl], [torch.float32], 0, [], [], None)
    with pytest.raises(ValueError, match="not channels-last"):
        kernel_args([FakeCudaTensor(torch.randn(1, 4, 3, 3))], [torch.float32], 0, [], [], ["channels_last"])
    with pytest.raises(ValueError, match="unknown layout 'diagonal'"):
        kernel_args([cl], [torch.float32], 0, [], [], ["diagonal"])
