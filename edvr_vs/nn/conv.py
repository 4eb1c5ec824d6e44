"""EDVR's convolutions: ``nn.Conv2d`` whose call can carry its activation and a residual add.

``Conv.run(x, act, add)`` is ``act(conv(x) + add)``. With ``fused`` set (the engine sets it from
``Speed.fused_convs``), on the CPU in inference it runs as one oneDNN convolution with post-ops
(``torch.ops.mkldnn._convolution_pointwise``): the activation and the add happen while the output
is still in cache instead of in passes of their own over memory. In fp32 that is the unfused
result to within an ulp (tested): bitwise on some CPUs, while on others (an AVX-512 AMD EPYC here)
oneDNN picks another kernel for some fused shapes and the last bit differs; in bf16 the activation sees the fp32 accumulator instead of its bf16
rounding. Elsewhere (CUDA, training, a torch without oneDNN) it is the plain ops.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["relu", "lrelu"] | None
LRELU_SLOPE = 0.1
_FUSABLE = {torch.float32, torch.bfloat16}
_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


def _activate(x: torch.Tensor, act: Activation) -> torch.Tensor:
    if act == "relu":
        return F.relu(x)
    if act == "lrelu":
        return lrelu(x)
    return x


class Conv(nn.Conv2d):
    """A convolution (zero padding, no groups) with BasicSR's parameter names."""

    fused = False

    def run(self, x: torch.Tensor, act: Activation = None, add: torch.Tensor | None = None) -> torch.Tensor:
        """``act(conv(x) + add)``; ``add`` has the output's shape. oneDNN fuses an add with ``relu``
        after it but not with ``lrelu``: that pair runs as a fused add, then the activation."""
        if (self.fused and _ONEDNN and x.device.type == "cpu" and x.dtype in _FUSABLE
                and not torch.is_grad_enabled()):
            return self._fused(x, act, add)
        out = self(x)
        return _activate(out if add is None else out + add, act)

    def _fused(self, x: torch.Tensor, act: Activation, add: torch.Tensor | None) -> torch.Tensor:
        op = torch.ops.mkldnn._convolution_pointwise
        geometry = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
        if add is None:
            if act == "lrelu":
                return op(x, self.weight, self.bias, *geometry, "leaky_relu", [LRELU_SLOPE], "")
            return op(x, self.weight, self.bias, *geometry, act or "none", [], "")
        if act == "lrelu":
            return lrelu(op.binary(x, add, self.weight, self.bias, *geometry, "add", None, None, [], None))
        return op.binary(x, add, self.weight, self.bias, *geometry, "add", None, act, [], None)


def conv3(cin: int, cout: int, stride: int = 1) -> Conv:
    return Conv(cin, cout, 3, stride, 1)


def conv1(cin: int, cout: int) -> Conv:
    return Conv(cin, cout, 1, 1)


def set_fused(module: nn.Module, enabled: bool) -> None:
    """Fuse (or not) every ``Conv`` inside ``module``."""
    for m in module.modules():
        if isinstance(m, Conv):
            m.fused = enabled
