"""How training inputs are made from ground-truth frames.

Low-resolution inputs: MATLAB's antialiased bicubic ``imresize`` (cubic kernel a = -0.5,
kernel widened by the scale, symmetric borders), optionally after a Gaussian blur (the BD
degradation); ``hr_in`` models get Gaussian-blurred, noisy inputs at full size instead,
optionally compressed as H.264 (``crf``: the deblur+compression task).
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edvr_vs.media import ffmpeg_exe


def _cubic(x: torch.Tensor) -> torch.Tensor:
    a = x.abs()
    return ((1.5 * a ** 3 - 2.5 * a ** 2 + 1) * (a <= 1)
            + (-0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2) * ((a > 1) & (a <= 2)))


def imresize_matrix(in_len: int, out_len: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """MATLAB ``imresize`` bicubic weights as an (out_len, in_len) matrix (antialiased when shrinking)."""
    scale = out_len / in_len
    width = 4.0 / scale if scale < 1 else 4.0
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None]
    dist = u[:, None] - idx
    weights = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    weights = weights / weights.sum(1, keepdim=True)
    # Symmetric padding: index i (1-based) outside [1, in_len] mirrors back inside.
    period = torch.cat([torch.arange(in_len), torch.arange(in_len - 1, -1, -1)])
    cols = period[((idx - 1).long()) % (2 * in_len)]
    mat = torch.zeros(out_len, in_len, dtype=torch.float64)
    mat.scatter_add_(1, cols, weights)
    return mat.to(dtype)


def imresize(img: torch.Tensor, scale: float) -> torch.Tensor:
    """MATLAB-compatible bicubic resize of ``(..., h, w)`` by ``scale`` (rounded up, as MATLAB does)."""
    h, w = img.shape[-2:]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    mh = imresize_matrix(h, oh, img.dtype).to(img.device)
    mw = imresize_matrix(w, ow, img.dtype).to(img.device)
    return mh @ img @ mw.t()


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(n, c, h, w)``, kernel radius ceil(3σ), reflect padding."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = img.shape[1]
    x = F.pad(img, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def h264_roundtrip(frames: torch.Tensor, crf: int) -> torch.Tensor:
    """Frames ``(n, 3, h, w)`` in [0, 1] through H.264 (libx264, 4:2:0, ``crf``) and back, with ffmpeg."""
    n, _, h, w = frames.shape
    pad_h, pad_w = h % 2, w % 2  # 4:2:0 needs even sizes
    x = F.pad(frames, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else frames
    raw = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).contiguous().numpy().tobytes()
    size = f"{w + pad_w}x{h + pad_h}"
    encoded = subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", size, "-i", "-",
                              "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p", "-f", "h264", "-"],
                             input=raw, capture_output=True, check=True).stdout
    decoded = subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "h264", "-i", "-", "-f", "rawvideo", "-pix_fmt",
                              "rgb24", "-"], input=encoded, capture_output=True, check=True).stdout
    out = torch.from_numpy(np.frombuffer(decoded, np.uint8).reshape(n, h + pad_h, w + pad_w, 3).copy())
    return out.permute(0, 3, 1, 2)[..., :h, :w].to(frames.dtype) / 255


@dataclass(frozen=True)
class Degradation:
    """How inputs are made from ground-truth frames."""

    scale: int = 4  # 4: bicubic x4 LR inputs; 1: hr_in (deblurring) inputs
    blur_sigma: float = 0.0  # Gaussian blur before downsampling (BD), or the deblur task's blur
    noise_sigma: float = 0.0  # additive Gaussian noise (in [0, 1] units) after downsampling
    crf: int = 0  # > 0: finally compress the window as H.264 at this CRF (the deblurcomp task)

    def __call__(self, gt: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``gt`` (n, 3, H, W) → inputs (n, 3, H/scale, W/scale), clamped to [0, 1]."""
        x = gt.double()
        if self.blur_sigma > 0:
            x = gaussian_blur(x, self.blur_sigma)
        if self.scale != 1:
            x = imresize(x, 1 / self.scale)
        if self.noise_sigma > 0:
            x = x + torch.randn(x.shape, generator=generator, dtype=x.dtype) * self.noise_sigma
        x = x.clamp(0, 1).to(gt.dtype)
        return h264_roundtrip(x, self.crf) if self.crf > 0 else x
