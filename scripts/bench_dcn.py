#!/usr/bin/env python3
"""Micro-benchmark: our deformable convolution vs torchvision.ops.deform_conv2d on EDVR shapes.

Prints JSON: one row per (channels, size, dtype) with milliseconds for each and the
ratio (torchvision / ours; > 1 means ours is faster). On CUDA ours is the CuPy kernel
+ cuBLAS; on the CPU the pure-torch path (fp32 only). ``--quick`` runs the smallest
shape only (CI).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torchvision

from edvr_vs.nn.dcn import deform_conv2d

SIZES = [(180, 320), (90, 160), (45, 80)]
CHANNELS = [64, 128]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="smallest shape only")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtypes = [torch.float32, torch.float16] if device.type == "cuda" else [torch.float32]
    sizes = SIZES[-1:] if args.quick else SIZES
    channels = CHANNELS[:1] if args.quick else CHANNELS
    repeat = args.repeat or (20 if device.type == "cuda" else 3)
    rows = []
    gen = torch.Generator().manual_seed(0)
    for c in channels:
        for h, w in sizes:
            for dtype in dtypes:
                b, g = args.frames, 8
                x = torch.randn(b, c, h, w, generator=gen).to(device, dtype)
                offset = (torch.randn(b, 2 * g * 9, h, w, generator=gen) * 3).to(device, dtype)
                mask = torch.rand(b, g * 9, h, w, generator=gen).to(device, dtype)
                weight = (torch.randn(c, c, 3, 3, generator=gen) / (3 * c ** 0.5)).to(device, dtype)
                bias = torch.zeros(c).to(device, dtype)
                with torch.inference_mode():
                    ours = timed(lambda: deform_conv2d(x, offset, weight, bias, 1, 1, 1, mask), device, repeat)
                    tv = timed(lambda: torchvision.ops.deform_conv2d(x, offset, weight, bias, 1, 1, 1, mask),
                               device, repeat)
                rows.append({"frames": b, "channels": c, "height": h, "width": w, "dtype": str(dtype).split(".")[1],
                             "ours_ms": round(ours, 4), "torchvision_ms": round(tv, 4), "ratio": round(tv / ours, 3)})
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "threads": torch.get_num_threads(), "torch": torch.__version__, "torchvision": torchvision.__version__}
    print(json.dumps({"benchmark": "dcn", **info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
