"""Which arithmetic torch uses for an engine's work: true fp32 on CUDA when ``precision="fp32"``, and
cuDNN's own algorithm timing (``autotune``).

cuDNN convolutions use TF32 on CUDA by default (10-bit mantissa), about 1e-3 off the CPU's
fp32; ``precision="fp32"`` means IEEE fp32 on every device.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import torch


def _tf32_switches() -> list[tuple[object, str, object]]:
    """(object, attribute, IEEE value) of torch's TF32 switches for cuDNN convolutions and cuBLAS matmuls:
    the per-backend precision API where torch has it (mixing it with the legacy flags raises)."""
    if hasattr(torch.backends.cudnn, "conv"):  # rnn too, so that torch's legacy allow_tf32 still reads
        return [(torch.backends.cudnn.conv, "fp32_precision", "ieee"), (torch.backends.cudnn.rnn, "fp32_precision", "ieee"),
                (torch.backends.cuda.matmul, "fp32_precision", "ieee")]
    return [(torch.backends.cudnn, "allow_tf32", False), (torch.backends.cuda.matmul, "allow_tf32", False)]


class _ProcessSwitches:
    """torch's process-wide switches set while any block of any thread runs, put back as they were
    when the last block ends (outside the engine's work the process keeps whatever it had chosen)."""

    def __init__(self, switches: Callable[[], list[tuple[object, str, object]]]) -> None:
        self._switches = switches  # () -> [(object, attribute, value while inside)]
        self._lock = threading.Lock()
        self._blocks = 0
        self._saved: list[object] = []

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._blocks == 0:
                switches = self._switches()
                self._saved = [getattr(obj, name) for obj, name, _ in switches]
                for obj, name, value in switches:
                    setattr(obj, name, value)
            self._blocks += 1
        try:
            yield
        finally:
            with self._lock:
                self._blocks -= 1
                if self._blocks == 0:
                    for (obj, name, _), value in zip(self._switches(), self._saved):
                        setattr(obj, name, value)


ieee_fp32 = _ProcessSwitches(_tf32_switches)
ieee_fp32.__doc__ = "True fp32 (no TF32) in cuDNN convolutions and cuBLAS matmuls while the block runs."
cudnn_benchmark = _ProcessSwitches(lambda: [(torch.backends.cudnn, "benchmark", True)])
cudnn_benchmark.__doc__ = ("cuDNN times its convolution algorithms on each new shape and keeps the fastest "
                           "(``torch.backends.cudnn.benchmark``) while the block runs.")


def numerics(device: torch.device, dtype: torch.dtype, autotune: bool = False) -> contextlib.AbstractContextManager:
    """The arithmetic context of an engine's work on ``device``: ``ieee_fp32`` for fp32 on CUDA (where
    cuDNN would otherwise use TF32, about 1e-3 off the CPU's fp32) and ``cudnn_benchmark`` on CUDA with
    ``autotune``; nothing elsewhere."""
    if device.type != "cuda" or not (dtype == torch.float32 or autotune):
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    if dtype == torch.float32:
        stack.enter_context(ieee_fp32())
    if autotune:
        stack.enter_context(cudnn_benchmark())
    return stack
