"""Clips from tensors and back, for the tests and the scripts (no pytest needed)."""

from __future__ import annotations

import numpy as np
import torch
import vapoursynth as vs


def clip_from_frames(frames: torch.Tensor, props: list[dict] | None = None) -> vs.VideoNode:
    """An RGBS clip whose frame i holds ``frames[i]`` ((t, 3, h, w) in [0, 1]) and ``props[i]``."""
    core = vs.core
    t, _, h, w = frames.shape
    data = frames.numpy().astype(np.float32)
    blank = core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=t, keep=True)

    def fill(n, f):
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), data[n, p])
        for k, v in (props[n] if props else {}).items():
            out.props[k] = v
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def frame_array(frame: vs.VideoFrame) -> torch.Tensor:
    """A VapourSynth frame's planes as a float tensor (planes, h, w) (same-size planes only)."""
    return torch.from_numpy(np.stack([np.asarray(frame[p]) for p in range(frame.format.num_planes)]).astype(np.float32))
