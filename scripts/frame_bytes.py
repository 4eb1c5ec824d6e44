#!/usr/bin/env python3
"""The frame cache's memory model: bytes one cached frame takes (its ``FrameFeatures``) per model, input
size and precision, computed on torch's meta device (shapes only, no memory, no GPU). Prints JSON.

A frame holds its padded input (3 channels) and, at three pyramid levels (1, 1/4 and 1/16 of the
pixels), its features and the two ``offset_conv1`` halves, each ``num_feat`` channels: per pixel
3 + 3 · num_feat · (1 + 1/4 + 1/16) values.
"""

from __future__ import annotations

import argparse
import json

import torch

from edvr_vs.nn.edvr import EDVR

MODELS = {"M": dict(num_feat=64, num_reconstruct_block=10), "L": dict(num_feat=128, num_reconstruct_block=40)}
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def frame_bytes(model: EDVR, height: int, width: int, dtype: torch.dtype) -> int:
    m = model.config.multiple
    x = torch.empty(1, 3, -(-height // m) * m, -(-width // m) * m, device="meta", dtype=dtype)
    with torch.inference_mode():
        features = model.frame_features(x)
    return sum(t.numel() * t.element_size() for t in features.tensors())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", default=["540x960", "1080x1920"], help="input HxW")
    parser.add_argument("--precisions", nargs="+", default=["fp16", "fp32"], choices=list(PRECISIONS))
    args = parser.parse_args()
    rows = []
    for name in args.models:
        for precision in args.precisions:
            model = EDVR(**MODELS[name]).to(device="meta", dtype=PRECISIONS[precision])
            for size in args.sizes:
                h, w = (int(v) for v in size.lower().split("x"))
                n = frame_bytes(model, h, w, PRECISIONS[precision])
                rows.append({"model": f"EDVR-{name}", "input": f"{h}x{w}", "precision": precision,
                             "frame_bytes": n, "frame_mib": round(n / 2 ** 20, 1),
                             "window_mib": round(model.config.num_frame * n / 2 ** 20, 1)})
    print(json.dumps({"memory_model": "frame cache bytes per cached frame", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
