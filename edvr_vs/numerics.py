"""Which arithmetic torch uses for an engine's work: true fp32 on CUDA when ``precision="fp32"``.

cuDNN convolutions use TF32 on CUDA by default (10-bit mantissa), about 1e-3 off the CPU's
fp32; ``precision="fp32"`` means IEEE fp32 on every device.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch


def _tf32_switches() -> list[tuple[object, str, object]]:
    """(object, attribute, IEEE value) of torch's TF32 switches for cuDNN convolutions and cuBLAS matmuls:
    the per-backend precision API where torch has it (mixing it with the legacy flags raises)."""
    if hasattr(torch.backends.cudnn, "conv"):  # rnn too, so that torch's legacy allow_tf32 still reads
        return [(torch.backends.cudnn.conv, "fp32_precision", "ieee"), (torch.backends.cudnn.rnn, "fp32_precision", "ieee"),
                (torch.backends.cuda.matmul, "fp32_precision", "ieee")]
    return [(torch.backends.cudnn, "allow_tf32", False), (torch.backends.cuda.matmul, "allow_tf32", False)]


_IEEE_LOCK = threading.Lock()
_ieee_blocks = 0
_saved_switches: list[object] = []


@contextlib.contextmanager
def ieee_fp32() -> Iterator[None]:
    """True fp32 (no TF32) in cuDNN convolutions and cuBLAS matmuls while the block runs.

    torch's switches are process-wide, so they are set when the first such block (of any thread)
    starts and put back as they were when the last one ends: outside ``precision="fp32"`` work on
    CUDA, the process keeps whatever it had chosen."""
    global _ieee_blocks
    with _IEEE_LOCK:
        if _ieee_blocks == 0:
            switches = _tf32_switches()
            _saved_switches[:] = [getattr(obj, name) for obj, name, _ in switches]
            for obj, name, value in switches:
                setattr(obj, name, value)
        _ieee_blocks += 1
    try:
        yield
    finally:
        with _IEEE_LOCK:
            _ieee_blocks -= 1
            if _ieee_blocks == 0:
                for (obj, name, _), value in zip(_tf32_switches(), _saved_switches):
                    setattr(obj, name, value)


def numerics(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """The arithmetic context of an engine's work: ``ieee_fp32`` for fp32 on CUDA (where cuDNN would
    otherwise use TF32, about 1e-3 off the CPU's fp32), nothing else elsewhere."""
    return ieee_fp32() if device.type == "cuda" and dtype == torch.float32 else contextlib.nullcontext()
