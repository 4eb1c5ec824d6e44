"""VapourSynth frames ↔ RGB tensors: the filter's frame I/O, and host-side helpers.

The filter talks to one small interface, ``FrameIO`` (``frame_io_for`` picks the
implementation for the device):

``ZimgIO``    CPU: zimg converts the clip to planar float RGB (RGBS) before the callback
              and back to the output format after it.
``KernelIO``  CUDA: raw planes travel to the GPU and back; ``kernels/convert.cu`` converts
              there with zimg's bilinear arithmetic, so both paths compute the same frames.

Both follow ``edvr_vs.colour``'s rule: the input's matrix, range and siting per frame
(``matrix=`` overrides), the output's from the input's frame 0.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import vapoursynth as vs

from edvr_vs.colour import clip_colour, frame_colour, from_rgbs, to_rgbs
from edvr_vs.convert import SAMPLE_TORCH, PlaneFormat, planes_to_rgb, rgb_to_planes
from edvr_vs.selfcheck import KernelCheck, check_planes_to_rgb, check_rgb_to_planes

core = vs.core


def frame_tensor(frame: vs.VideoFrame, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
    """A frame's planes as a tensor (planes, h, w) (same-size planes only), in ``dtype`` (None: the
    frame's own sample type)."""
    planes = torch.from_numpy(np.stack([np.asarray(frame[p]) for p in range(frame.format.num_planes)]))
    return planes if dtype is None else planes.to(dtype)


def clip_from_frames(frames: torch.Tensor, props: list[dict] | None = None) -> vs.VideoNode:
    """An RGBS clip whose frame i holds ``frames[i]`` ((t, 3, h, w) in [0, 1]) and ``props[i]``."""
    t, _, h, w = frames.shape
    data = frames.numpy().astype(np.float32)
    blank = core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=t, keep=True)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), data[n, p])
        for k, v in (props[n] if props else {}).items():
            out.props[k] = v
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def wait_for_stream(device: torch.device) -> None:
    """Block until the work queued so far on ``device``'s current stream is done, sleeping meanwhile
    (a blocking-sync event: the thread yields its core, which VapourSynth's decoders need, instead
    of spinning); other streams keep running."""
    done = torch.cuda.Event(blocking=True)
    done.record(torch.cuda.current_stream(device))
    done.synchronize()


def _set_props(frame: vs.VideoFrame, props: dict[str, int]) -> None:
    for k, v in props.items():
        frame.props[k] = v


class FrameIO(Protocol):
    """What the filter needs from frame I/O."""

    source: vs.VideoNode  # the clip whose frames ``read`` takes (windows are spliced from it)

    def blank(self, width: int, height: int) -> vs.VideoNode:
        """A clip of the callback's output frames (size in pixels), with the input's length and timing."""

    def read(self, frame: vs.VideoFrame) -> torch.Tensor:
        """A frame of ``source`` → RGB (3, h, w) in [0, 1]."""

    def write(self, rgb: torch.Tensor, frame: vs.VideoFrame) -> None:
        """RGB (3, H, W) on the engine's device → the planes and colour props of ``frame`` (from ``blank``)."""

    def finish(self, out: vs.VideoNode) -> vs.VideoNode:
        """The callback's clip → the output clip."""


class ZimgIO:
    """CPU path: zimg converts to RGBS before the callback and back after it."""

    def __init__(self, clip: vs.VideoNode, fmt: vs.VideoFormat, matrix: int | None) -> None:
        self.clip, self.fmt, self.matrix = clip, fmt, matrix
        self.source = to_rgbs(clip, matrix)

    def blank(self, width: int, height: int) -> vs.VideoNode:
        return core.std.BlankClip(self.source, width=width, height=height, keep=True)

    def read(self, frame: vs.VideoFrame) -> torch.Tensor:
        return frame_tensor(frame)

    def write(self, rgb: torch.Tensor, frame: vs.VideoFrame) -> None:
        data = rgb.float().cpu().numpy()
        for p in range(3):
            np.copyto(np.asarray(frame[p]), data[p])
        _set_props(frame, {"_Matrix": int(vs.MATRIX_RGB), "_Range": int(vs.RANGE_FULL)})

    def finish(self, out: vs.VideoNode) -> vs.VideoNode:
        yuv = self.fmt.color_family == vs.YUV
        return from_rgbs(out, self.fmt, clip_colour(self.clip, self.matrix) if yuv else None)


class KernelIO:
    """CUDA path: planes go up through (optionally page-locked) host buffers, are converted by
    ``kernels/convert.cu`` on the request's stream, and come back the same way."""

    def __init__(self, clip: vs.VideoNode, fmt: vs.VideoFormat, matrix: int | None, device: torch.device,
                 dtype: torch.dtype, pinned_memory: bool) -> None:
        self.source, self.fmt, self.matrix, self.device = clip, fmt, matrix, device
        self.dtype = torch.float16 if dtype == torch.float16 else torch.float32
        self.pinned = pinned_memory
        self.colour = colour = clip_colour(clip, matrix)  # frame 0's: the output's
        is_rgb = fmt.color_family == vs.RGB
        self.out_pf = PlaneFormat.for_colour(fmt, colour)
        self.out_props = ({"_Matrix": int(vs.MATRIX_RGB), "_Range": int(vs.RANGE_FULL)} if is_rgb
                          else {"_Matrix": colour.matrix, "_Range": colour.range_prop})

    def blank(self, width: int, height: int) -> vs.VideoNode:
        return core.std.BlankClip(self.source, width=width, height=height, format=self.fmt.id, keep=True)

    def _upload(self, plane: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        """A (read-only, row-padded) plane → a contiguous tensor on the device; one host copy."""
        host = torch.empty(plane.shape, dtype=dtype, pin_memory=self.pinned)
        np.copyto(host.numpy(), plane)
        # From page-locked memory the copy is asynchronous; torch's caching host allocator
        # keeps the block until it is done.
        return host.to(self.device, non_blocking=True)

    def read(self, frame: vs.VideoFrame) -> torch.Tensor:
        fmt = self.source.format
        colour = frame_colour(frame.props, self.source.width, self.source.height, self.matrix)
        pf = PlaneFormat.for_colour(fmt, colour)
        planes = [self._upload(np.asarray(frame[p]), SAMPLE_TORCH[pf.sample]) for p in range(3)]
        return planes_to_rgb(planes, pf, self.dtype)

    def write(self, rgb: torch.Tensor, frame: vs.VideoFrame) -> None:
        planes = rgb_to_planes(rgb.to(self.dtype), self.out_pf)
        if self.pinned:
            hosts = [torch.empty(p.shape, dtype=p.dtype, pin_memory=True).copy_(p, non_blocking=True) for p in planes]
            wait_for_stream(self.device)
        else:
            wait_for_stream(self.device)  # the conversion done: the copies below wait at most for later work
            hosts = [p.cpu() for p in planes]
        for p, host in enumerate(hosts):
            np.copyto(np.asarray(frame[p]), host.numpy())
        _set_props(frame, self.out_props)

    def finish(self, out: vs.VideoNode) -> vs.VideoNode:
        return out



def frame_io_for(clip: vs.VideoNode, *, fmt: vs.VideoFormat, matrix: int | None, device: torch.device,
                 dtype: torch.dtype, pinned_memory: bool) -> tuple[FrameIO, list[KernelCheck]]:
    """The frame I/O for ``device`` and the self-checks it rests on: ``KernelIO`` on CUDA when both
    conversion kernels pass theirs for these formats (``edvr_vs.selfcheck``), else ``ZimgIO``."""
    if device.type != "cuda":
        return ZimgIO(clip, fmt, matrix), []
    io = KernelIO(clip, fmt, matrix, device, dtype, pinned_memory)
    checks = [check_planes_to_rgb(clip.format, io.colour, device, io.dtype),
              check_rgb_to_planes(fmt, io.colour, device, io.dtype)]
    if all(c.ok for c in checks):
        return io, checks
    return ZimgIO(clip, fmt, matrix), checks
