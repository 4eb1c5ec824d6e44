"""The embedded default model: in the package, as the zoo records it, and better than bicubic."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import vapoursynth as vs

from edvr_vs import edvr, load_model, zoo
from edvr_vs.train.degradations import imresize
from edvr_vs.train.metrics import psnr, rgb_to_y
from edvr_vs.frame_io import clip_from_frames, frame_tensor
from tests.conftest import demo_frames

core = vs.core


def test_default_model_is_embedded_and_verified():
    name = zoo.default_model()
    assert name == "EDVR_T_x4_SR"
    entry = zoo.entry(name)
    path = zoo.weights_path(name)
    assert entry.source == "embedded" and path.is_file()
    assert path.stat().st_size <= 3 * 2 ** 20
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
    model = load_model(path)
    assert model.config == entry.arch and model.config.scale == entry.scale == 4


def y_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.mean([psnr(rgb_to_y(x[None]), rgb_to_y(y[None])) for x, y in zip(a, b)]))


def gain(gt: torch.Tensor) -> float:
    """Y-PSNR of edvr() with no model named minus zimg's bicubic, on an x4 MATLAB-bicubic downscale."""
    lq = imresize(gt.double(), 0.25).float().clamp(0, 1)
    clip = clip_from_frames(lq)
    ours = torch.stack([frame_tensor(f) for f in edvr(clip, device="cpu").frames()])
    bicubic = torch.stack([frame_tensor(f) for f in
                           core.resize.Bicubic(clip, width=clip.width * 4, height=clip.height * 4).frames()])
    return y_psnr(ours, gt) - y_psnr(bicubic, gt)


def test_beats_bicubic_on_held_out_frames(vimeo_frames):
    gains = [gain(vimeo_frames), gain(demo_frames(7)[..., :176, :])]
    # Measured on these frames: +1.634 dB (Vimeo-90K) and +1.422 dB (demo_000, 7 frames), mean 1.528
    # (stage 2's model: +1.523, +1.255; stage 1's: +1.214, +1.022); asserted with a 0.15 dB safety band.
    assert np.mean(gains) >= 1.528 - 0.15, gains
    assert min(gains) >= 0.5, gains
