#!/usr/bin/env python3
"""Quality of an x4 model through the filter against zimg bicubic, on held-out real frames (JSON out).

Each sequence (a folder of frames, default: ../shared/data/*, never used for training) is the
ground truth; its x4 MATLAB-bicubic downscale is the input. Reported per sequence and on
average: Y-PSNR (BT.601, 8-bit) of edvr_vs.edvr(input) and of core.resize.Bicubic x4 with
VapourSynth's default (b = 0, c = 0.5, Catmull-Rom) and with Mitchell-Netravali (b = c = 1/3),
and the gains.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import vapoursynth as vs

from edvr_vs import edvr
from edvr_vs.frame_io import clip_from_frames, frame_tensor
from edvr_vs.media import read_images
from edvr_vs.train.data import find_sequences
from edvr_vs.train.degradations import imresize
from edvr_vs.train.metrics import psnr, rgb_to_y

REPO = Path(__file__).resolve().parents[1]

core = vs.core


def y_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.mean([psnr(rgb_to_y(x[None]), rgb_to_y(y[None])) for x, y in zip(a, b)]))


def evaluate(folder: Path, model: str | None, weights: str | None, device: str) -> dict:
    gt = torch.from_numpy(read_images(sorted(p for p in folder.iterdir() if p.suffix == ".png")))
    gt = gt.permute(0, 3, 1, 2).float() / 255
    h, w = gt.shape[-2:]
    gt = gt[..., : h - h % 4, : w - w % 4]
    lq = imresize(gt.double(), 0.25).float().clamp(0, 1)
    clip = clip_from_frames(lq)
    def frames_of(node: vs.VideoNode) -> torch.Tensor:
        return torch.stack([frame_tensor(f) for f in node.frames()])

    restored = frames_of(edvr(clip, model=model, weights=weights, device=device))
    bicubic = frames_of(core.resize.Bicubic(clip, width=clip.width * 4, height=clip.height * 4))
    mitchell = frames_of(core.resize.Bicubic(clip, width=clip.width * 4, height=clip.height * 4,
                                             filter_param_a=1 / 3, filter_param_b=1 / 3))
    row = {"sequence": folder.name, "frames": len(gt), "size": f"{gt.shape[-1]}x{gt.shape[-2]}",
           "edvr_y_psnr": y_psnr(restored, gt), "bicubic_y_psnr": y_psnr(bicubic, gt),
           "mitchell_y_psnr": y_psnr(mitchell, gt)}
    row["gain_db"] = row["edvr_y_psnr"] - row["bicubic_y_psnr"]
    row["gain_vs_mitchell_db"] = row["edvr_y_psnr"] - row["mitchell_y_psnr"]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", help="frame folders (default: every sequence in ../shared/data)")
    parser.add_argument("--model", default=None, help="zoo name (default: the embedded model)")
    parser.add_argument("--weights", default=None, help="checkpoint path instead of a zoo model")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    folders = [Path(f) for f in args.folders] or [s[0].parent for s in find_sequences(REPO.parent / "shared" / "data")]
    rows = [evaluate(f, args.model, args.weights, args.device) for f in folders]
    mean = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0] if k.endswith(("psnr", "db"))}
    print(json.dumps({"evaluation": "x4 Y-PSNR on held-out frames", "rows": rows, "mean": mean}, indent=1))


if __name__ == "__main__":
    main()
