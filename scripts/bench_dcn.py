#!/usr/bin/env python3
"""Micro-benchmark: EDVR's deformable convolution as the model calls it, against torchvision's.

The operands are the model's: a batch of B = 5 frames' features, channels-last; offsets and mask
logits as strided slices of one channels-last ``conv_offset`` output (3·G·K channels, G = 8),
offsets of a few pixels as trained models predict. Per backend it times the whole DCN (sampling,
sigmoid, GEMM, bias; not ``conv_offset``) and reports milliseconds, effective GB/s (the bytes the
operation cannot avoid moving: input, ``conv_offset`` output, weights and output, once each, per
second) and the ratio to torchvision (``torchvision_ms / ms``; > 1 is faster). torchvision gets
BasicSR's call: ``sigmoid`` of the logits, then ``torchvision.ops.deform_conv2d``.

Backends: on the CPU our ``torch`` path (fp32); on CUDA the ``cupy_v1`` and ``cupy_v2`` kernels and
``torch`` (fp32, fp16, bf16). Shapes: EDVR-M (64 channels) and EDVR-L (128) at 180×320 and 270×480
(``--quick``: 64 channels at 45×80, for CI). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torchvision

from edvr_vs.nn.dcn import deform_conv2d_logits

SIZES = [(180, 320), (270, 480)]
CHANNELS = {"EDVR-M": 64, "EDVR-L": 128}
GROUPS, K = 8, 9
GEOMETRY = ((1, 1), (1, 1), (1, 1))


def timed(fn, device: torch.device, repeat: int) -> float:
    """Median milliseconds of ``fn()`` after a warm-up (CUDA events on the GPU)."""
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return sorted(times)[len(times) // 2]


def operands(b: int, c: int, h: int, w: int, device: torch.device, dtype: torch.dtype, gen: torch.Generator):
    """x, offset, logit, weight, bias as the model holds them (offsets ~1.5 px, logits ~N(0, 1))."""
    cl = torch.channels_last
    x = torch.randn(b, c, h, w, generator=gen).to(device, dtype).contiguous(memory_format=cl)
    out = torch.randn(b, 3 * GROUPS * K, h, w, generator=gen)
    out[:, :2 * GROUPS * K] *= 1.5
    out = out.to(device, dtype).contiguous(memory_format=cl)
    weight = (torch.randn(c, c, 3, 3, generator=gen) / (3 * c ** 0.5)).to(device, dtype).contiguous(memory_format=cl)
    bias = torch.randn(c, generator=gen).to(device, dtype)
    return x, out[:, :2 * GROUPS * K], out[:, 2 * GROUPS * K:], weight, bias, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=5, help="batch: the frames of one window (B)")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="64 channels at 45x80 only")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtypes = [torch.float32, torch.float16, torch.bfloat16] if cuda else [torch.float32]
    backends = ["torch", "cupy_v1", "cupy_v2"] if cuda else ["torch"]
    sizes = [(45, 80)] if args.quick else SIZES
    models = {"EDVR-M": 64} if args.quick else CHANNELS
    repeat = args.repeat or (20 if cuda else 3)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for model, c in models.items():
        for h, w in sizes:
            for dtype in dtypes:
                x, offset, logit, weight, bias, out = operands(args.frames, c, h, w, device, dtype, gen)
                nbytes = (x.numel() + out.numel() + weight.numel() + x.numel()) * x.element_size()
                with torch.inference_mode():
                    tv = timed(lambda: torchvision.ops.deform_conv2d(x, offset, weight, bias, *GEOMETRY,
                                                                     torch.sigmoid(logit)), device, repeat)
                    row = {"model": model, "frames": args.frames, "channels": c, "height": h, "width": w,
                           "dtype": str(dtype).split(".")[1], "torchvision_ms": round(tv, 4),
                           "torchvision_gbps": round(nbytes / tv / 1e6, 2), "backends": {}}
                    for name in backends:
                        ms = timed(lambda: deform_conv2d_logits(x, offset, logit, weight, bias, *GEOMETRY,
                                                                backend=name, autotune=False), device, repeat)
                        row["backends"][name] = {"ms": round(ms, 4), "gbps": round(nbytes / ms / 1e6, 2),
                                                 "ratio": round(tv / ms, 3)}
                rows.append(row)
    info = {"device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
            "threads": torch.get_num_threads(), "torch": torch.__version__, "torchvision": torchvision.__version__}
    print(json.dumps({"benchmark": "dcn", **info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
