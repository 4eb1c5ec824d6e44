"""EDVR as a standard ONNX model for vs-mlrt (``core.ort.Model``, ``core.trt.Model``, …): ``edvr-vs export``.

The graph takes vs-mlrt's layout: one input ``(1, 3·(2N+1), H, W)``, float RGB in [0, 1], the
window's frames n−N … n+N one after another along the channels (``edvr_vs.window_clips`` gives
those 2N+1 clips), and one output ``(1, 3, s·H, s·W)``. H and W are dynamic; inside the graph a
size that is not a multiple of the model's (4, or 16 with ``hr_in``) is padded and the result
cropped as ``edvr()`` does (``pad_to_multiple``). Every modulated deformable convolution is the
standard ``DeformConv`` operator (opset 19 and later): the model runs with the ``export``
backend, whose single operator ``edvr_vs::deform_conv2d`` is translated here, and nothing else
is custom. Needs ``onnx`` and ``onnxscript`` (``pip install "edvr_vs[onnx]"``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
from pathlib import Path

import torch
from torch import nn

from edvr_vs.files import atomic_output
from edvr_vs.nn.edvr import EDVR, pad_to_multiple

FIRST_OPSET = 19  # DeformConv's first version
INPUT, OUTPUT = "input", "output"


class OnnxExportError(Exception):
    """The export cannot run (a missing package, a bad option)."""


def _onnx_modules():
    """``onnx`` and ``onnxscript``, or an error naming the extra that installs them."""
    try:
        import onnx
        import onnxscript
    except ImportError as e:
        raise OnnxExportError(f"the ONNX export needs onnx and onnxscript ({e.name} is missing): "
                              'pip install "edvr_vs[onnx]"') from None
    return onnx, onnxscript


def opsets() -> range:
    """The opsets the export can target: from ``DeformConv``'s first to the newest onnxscript writes."""
    _, onnxscript = _onnx_modules()
    last = FIRST_OPSET
    while hasattr(onnxscript, f"opset{last + 1}"):
        last += 1
    return range(FIRST_OPSET, last + 1)


class WindowModel(nn.Module):
    """vs-mlrt's layout around ``EDVR``: ``(1, 3·T, H, W)`` float → ``(1, 3, s·H, s·W)`` float, the
    network's arithmetic in ``dtype``."""

    def __init__(self, net: EDVR, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = copy.deepcopy(net).to(dtype).eval()
        self.net.set_fused_convs(False)
        self.net.set_dcn(backend="export", check_offsets=False)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.net.config
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x.to(self.dtype), cfg.multiple)
        out = self.net(padded.view(1, cfg.num_frame, 3, *padded.shape[-2:]))
        return out[:, :, :cfg.scale * h, :cfg.scale * w].float()


def _translation(onnxscript, opset: int):
    """``edvr_vs::deform_conv2d`` → ONNX ``DeformConv`` in ``opset``."""
    op = getattr(onnxscript, f"opset{opset}")

    def deform_conv(x, offset, mask, weight, bias, stride, padding, dilation, groups):
        return op.DeformConv(x, weight, offset, bias, mask, dilations=list(dilation), group=1,
                             offset_group=groups, pads=[padding[0], padding[1], padding[0], padding[1]],
                             strides=list(stride))

    return {torch.ops.edvr_vs.deform_conv2d.default: deform_conv}


def export_onnx(net: EDVR, path: str | os.PathLike, *, fp16: bool = False, opset: int = FIRST_OPSET,
                metadata: dict[str, str] | None = None) -> Path:
    """Write ``net`` as ONNX to ``path`` (whole or not at all) and check it with ``onnx.checker``.

    ``fp16``: fp16 weights and arithmetic, fp32 input and output. ``metadata`` (``edvr-vs export``:
    the model or weights and the padding mode ``window_clips`` uses) goes into the model's
    ``metadata_props`` beside the layout (frames, scale, multiple, precision). Returns the path.
    """
    onnx, onnxscript = _onnx_modules()
    if opset not in opsets():
        raise OnnxExportError(f"'opset' must be in {opsets().start}..{opsets().stop - 1}, got {opset!r}")
    cfg = net.config
    model = WindowModel(net, torch.float16 if fp16 else torch.float32).eval()
    size = 4 * cfg.multiple  # a sample size; H and W stay dynamic
    sample = torch.rand(1, 3 * cfg.num_frame, size, size - 1)
    dims = {"x": {2: torch.export.Dim("height", min=1), 3: torch.export.Dim("width", min=1)}}
    path = Path(path)
    with torch.no_grad(), contextlib.redirect_stdout(None):
        program = torch.onnx.export(model, (sample,), dynamo=True, opset_version=opset, dynamic_shapes=dims,
                                    custom_translation_table=_translation(onnxscript, opset),
                                    input_names=[INPUT], output_names=[OUTPUT], verbose=False)
    proto = program.model_proto
    props = {"num_frame": cfg.num_frame, "scale": cfg.scale, "multiple": cfg.multiple,
             "precision": "fp16" if fp16 else "fp32", **(metadata or {})}
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(proto, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as partial:
        onnx.save(proto, partial)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``edvr-vs export``'s arguments."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", help="zoo model name (default: the embedded model)")
    which.add_argument("--weights", help="checkpoint path (BasicSR, mmagic or original EDVR layout)")
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.add_argument("--fp16", action="store_true", help="fp16 weights and arithmetic (fp32 input and output)")
    parser.add_argument("--opset", type=int, default=FIRST_OPSET,
                        help=f"ONNX opset, {FIRST_OPSET} or later (default {FIRST_OPSET}: DeformConv's first)")


def run(args: argparse.Namespace) -> Path:
    """``edvr-vs export``: the model named by ``--model`` / ``--weights`` → ``--output``."""
    from edvr_vs import zoo
    from edvr_vs.arguments import default_padding
    from edvr_vs.checkpoint import load_model

    if args.weights is not None:
        net = load_model(args.weights)
        meta = {"weights": Path(args.weights).name, "padding": default_padding(net)}
    else:
        name = args.model or zoo.default_model()
        if name is None:
            raise OnnxExportError("this version ships no embedded model: pass --model NAME or --weights PATH")
        net, meta = load_model(zoo.weights_path(name)), {"model": name, "padding": zoo.entry(name).padding}
    return export_onnx(net, args.output, fp16=args.fp16, opset=args.opset, metadata=meta)
