"""The fast-path switches: one definition of their names, defaults, types, devices and help.

``edvr()``'s keywords, its docstring, ``edvr-vs run``'s flags and ``scripts/bench.py --set``
and ``--ablation`` are all derived from ``Speed``'s fields. None of the switches changes
the frames beyond rounding; README "Performance" says what each was measured to buy.
"""

from __future__ import annotations

import typing
from dataclasses import Field, dataclass, field, fields

import torch


def _switch(default: object, help: str, *, cuda_only: bool = False, needs_cuda: bool = False,
            minimum: int | None = None) -> typing.Any:
    """A ``Speed`` field. ``cuda_only``: no effect off CUDA; ``needs_cuda``: refused off CUDA when
    not the default; ``minimum``: the least value of an int switch."""
    return field(default=default, metadata={"help": help, "cuda_only": cuda_only or needs_cuda,
                                            "needs_cuda": needs_cuda, "minimum": minimum})


@dataclass(frozen=True, kw_only=True)
class Speed:
    """Fast-path switches, validated on construction (ValueError naming the switch)."""

    num_streams: int = _switch(
        1, "CUDA streams that requests are spread over, so one frame's upload, compute and download "
           "overlap another's", cuda_only=True, minimum=1)
    cuda_graphs: bool = _switch(
        False, "capture the per-window network once per stream and tile shape, then replay it "
               "(no per-kernel launch cost); the graphs of a stream share one memory pool", needs_cuda=True)
    pinned_memory: bool = _switch(
        True, "frames travel through page-locked host buffers (asynchronous upload, direct download)",
        cuda_only=True)
    channels_last: bool = _switch(
        True, "NHWC activations and weights (oneDNN's and cuDNN's fast layout); False = NCHW")
    fused_convs: bool = _switch(
        True, "CPU: each convolution runs with its activation and residual add as oneDNN post-ops, "
              "saving a pass over memory each; no effect on CUDA")
    batch_align: bool | None = _switch(
        None, "True: the 2N+1 PCD alignments of a window as one batch; False: one call per frame, as "
              "BasicSR; None: batched on CUDA, per frame on the CPU (faster there)")
    autotune: bool = _switch(
        True, "time the equivalent algorithms once per shape and keep the fastest: cuDNN's convolution "
              "algorithms (torch.backends.cudnn.benchmark) and the deformable sampling kernel (v2 or v1); "
              "False: fixed choices (v2, cuDNN's heuristics), the same in every process", cuda_only=True)
    check_offsets: bool = _switch(
        False, "BasicSR's warning when a DCN's mean offset magnitude exceeds 50 px; a host "
               "synchronisation per DCN, so off by default (not with cuda_graphs)")

    def __post_init__(self) -> None:
        for f in fields(self):
            check_value(f, getattr(self, f.name))
        if self.cuda_graphs and self.check_offsets:
            raise ValueError("'check_offsets' synchronises with the host, which a CUDA graph cannot: "
                             "turn one of 'check_offsets' and 'cuda_graphs' off")

    def check_device(self, device: torch.device) -> None:
        """ValueError if a switch that needs CUDA is on and ``device`` is not CUDA."""
        for f in fields(self):
            if f.metadata["needs_cuda"] and getattr(self, f.name) != f.default and device.type != "cuda":
                raise ValueError(f"{f.name!r} needs CUDA; the device is {device.type!r}")

    def resolved_batch_align(self, device: torch.device) -> bool:
        """``batch_align`` with None resolved for ``device``."""
        return device.type == "cuda" if self.batch_align is None else self.batch_align


def switch_type(f: Field) -> object:
    """The switch's type: ``bool``, ``int`` or ``bool | None``."""
    return typing.get_type_hints(Speed)[f.name]


def check_value(f: Field, value: object) -> None:
    """ValueError unless ``value`` has switch ``f``'s type (and minimum)."""
    kind = switch_type(f)
    if kind is int:
        low = f.metadata["minimum"]
        if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
            raise ValueError(f"{f.name!r} must be an int ≥ {low}, got {value!r}")
    elif not (isinstance(value, bool) or (value is None and kind != bool)):
        allowed = "True or False" if kind is bool else "True or False (or None)"
        raise ValueError(f"{f.name!r} must be {allowed}, got {value!r}")


def parse_value(f: Field, text: str) -> object:
    """A switch's value from text (``true``/``false``/``none``, or an int), checked."""
    low = text.strip().lower()
    if switch_type(f) is int:
        try:
            value: object = int(low)
        except ValueError:
            raise ValueError(f"{f.name!r} must be an int, got {text!r}") from None
    else:
        value = {"true": True, "false": False, "none": None}.get(low, text)
    check_value(f, value)
    return value


def describe() -> str:
    """One line per switch: name, default and help (for docstrings, indented as their arguments)."""
    return "\n".join(f"        {f.name} (default {f.default!r}{', CUDA only' if f.metadata['cuda_only'] else ''}): "
                     f"{f.metadata['help']}." for f in fields(Speed))
