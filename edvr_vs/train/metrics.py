"""Loss, image metrics (BasicSR's conventions) and validation against bicubic."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from edvr_vs.nn.edvr import EDVR
from edvr_vs.train.degradations import Degradation, imresize
from edvr_vs.window import window_indices


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps ** 2).mean()


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """BT.601 luma in [16/255, 235/255] of RGB in [0, 1] (MATLAB ``rgb2ycbcr``), (n, 3, h, w) → (n, 1, h, w)."""
    w = torch.tensor([65.481, 128.553, 24.966], dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    return (img * w).sum(1, keepdim=True) / 255 + 16 / 255


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1] (quantised to 8 bits first, as BasicSR's tests do)."""
    a = (a.clamp(0, 1) * 255).round().double()
    b = (b.clamp(0, 1) * 255).round().double()
    mse = ((a - b) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM (Wang et al. 2004: 11×11 Gaussian window, σ 1.5, valid region) of 8-bit-quantised images."""
    a = (a.clamp(0, 1) * 255).round().double()
    b = (b.clamp(0, 1) * 255).round().double()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    t = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-t ** 2 / (2 * 1.5 ** 2))
    g = (g / g.sum())
    win = (g[:, None] * g[None, :]).view(1, 1, 11, 11).expand(a.shape[1], 1, 11, 11)

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, win, groups=a.shape[1])

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean().item()


def validate(model: EDVR, sequences: list[np.ndarray], degradation: Degradation, max_frames: int = 0
             ) -> dict[str, float]:
    """Mean PSNR/SSIM (RGB and Y) of the model and of bicubic, restoring the middle frames of each sequence.

    Windows at sequence edges use BasicSR's reflection_circle padding.
    """
    radius = model.config.radius
    m = model.config.multiple
    sums = {k: 0.0 for k in ("psnr_rgb", "psnr_y", "ssim_y", "bicubic_psnr_rgb", "bicubic_psnr_y", "bicubic_ssim_y")}
    count = 0
    model.eval()
    for seq in sequences:
        gt_all = torch.from_numpy(seq).permute(0, 3, 1, 2).float() / 255
        h, w = gt_all.shape[-2:]
        h, w = h - h % (m * degradation.scale), w - w % (m * degradation.scale)
        gt_all = gt_all[..., :h, :w]
        lq_all = degradation(gt_all)
        picks = range(len(seq)) if not max_frames else np.linspace(0, len(seq) - 1, max_frames).round().astype(int)
        for n in picks:
            idx = window_indices(int(n), radius, 0, len(seq) - 1, "reflection_circle")
            with torch.inference_mode():
                out = model(lq_all[idx].unsqueeze(0))
            gt = gt_all[n:n + 1]
            bic = imresize(lq_all[n:n + 1].double(), degradation.scale).float() if degradation.scale > 1 else lq_all[n:n + 1]
            for prefix, img in (("", out), ("bicubic_", bic)):
                sums[prefix + "psnr_rgb"] += psnr(img, gt)
                sums[prefix + "psnr_y"] += psnr(rgb_to_y(img), rgb_to_y(gt))
                sums[prefix + "ssim_y"] += ssim(rgb_to_y(img), rgb_to_y(gt))
            count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}
