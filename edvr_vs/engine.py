"""Runs EDVR on windows of frames, computing each frame's own work once.

Per source frame (and tile) the ring buffer keeps a ``FrameWork``: the padded RGB
tensor on the device, its L1/L2/L3 features, and the frame-only halves of each
level's ``offset_conv1`` (as neighbour and as reference). A window then costs the
PCD alignment of its 2N+1 frames (one batch on CUDA, one call per frame on the CPU),
the fusion and the reconstruction.

Frames are always processed one at a time (batch 1) and windows always the same
way, so an output frame does not depend on the order or concurrency of requests:
on the CPU the results are bitwise reproducible.

``Speed`` holds the fast-path switches; each can be turned off on its own, so that
``scripts/bench.py --ablation`` measures what it buys.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from edvr_vs.graphs import GraphCache
from edvr_vs.nn.dcn import DCNv2Pack
from edvr_vs.nn.edvr import EDVR, Pyramid
from edvr_vs.ring import FrameCache

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True, kw_only=True)
class Speed:
    """Fast-path switches; README "Performance" says what each was measured to buy. The
    CUDA-only ones have no effect on the CPU."""

    channels_last: bool = True  # NHWC activations and weights: oneDNN's and cuDNN's fastest layout
    # The 2N+1 PCD alignments of a window as one batch, or one call per frame. None: batched on
    # CUDA, per frame on the CPU, where one frame's tensors stay in cache (measured 1.2-1.7x faster
    # from 88x160 up).
    batch_align: bool | None = None
    check_offsets: bool = False  # BasicSR's offset-magnitude warning: a host synchronisation per DCN
    cuda_graphs: bool = False  # replay the per-window network as a CUDA graph (CUDA only)
    num_streams: int = 1  # CUDA streams that requests are spread over (CUDA only)
    pinned_memory: bool = True  # page-locked host buffers for frame upload/download (CUDA only)

    def __post_init__(self) -> None:
        """Each switch's type, and the combination that cannot work: ValueError naming them."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "num_streams":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"'num_streams' must be an int ≥ 1, got {value!r}")
            elif not (isinstance(value, bool) or (f.name == "batch_align" and value is None)):
                allowed = "True or False (or None)" if f.name == "batch_align" else "True or False"
                raise ValueError(f"{f.name!r} must be {allowed}, got {value!r}")
        if self.cuda_graphs and self.check_offsets:
            raise ValueError("'check_offsets' synchronises with the host, which a CUDA graph cannot: "
                             "turn one of 'check_offsets' and 'cuda_graphs' off")

    def check_device(self, device: torch.device) -> None:
        """ValueError if a switch needs a device other than ``device``."""
        if self.cuda_graphs and device.type != "cuda":
            raise ValueError(f"'cuda_graphs' needs CUDA; the device is {device.type!r}")


@dataclass(frozen=True)
class Tile:
    """A tile in input pixels: the core it outputs and the wider region it reads."""

    x0: int
    y0: int
    x1: int
    y1: int
    rx0: int
    ry0: int
    rx1: int
    ry1: int


def make_tiles(width: int, height: int, tile: tuple[int, int] | None, overlap: tuple[int, int]) -> list[Tile]:
    """Cover ``width`` × ``height`` with cores of ``tile`` = (w, h), each read with ``overlap`` around it."""
    if tile is None:
        return [Tile(0, 0, width, height, 0, 0, width, height)]
    tw, th = tile
    ox, oy = overlap
    tiles = []
    for y0, x0 in itertools.product(range(0, height, th), range(0, width, tw)):
        x1, y1 = min(x0 + tw, width), min(y0 + th, height)
        tiles.append(Tile(x0, y0, x1, y1, max(0, x0 - ox), max(0, y0 - oy), min(width, x1 + ox), min(height, y1 + oy)))
    return tiles


@dataclass
class FrameWork:
    """Everything that depends on one frame (one tile of it) alone."""

    rgb: torch.Tensor  # (1, 3, h, w), padded to the model's multiple
    feats: Pyramid  # L1, L2, L3, each (1, C, ...)
    as_nbr: Pyramid  # offset_conv1 half applied to this frame as a neighbour
    as_ref: Pyramid  # offset_conv1 half applied to this frame as the reference (with bias)
    ready: torch.cuda.Event | None = None  # set on the stream that computed it (CUDA only)


class Engine:
    """One EDVR model on one device at one precision, with its ring buffer."""

    def __init__(self, model: EDVR, device: torch.device, precision: str, *, width: int, height: int,
                 tile: tuple[int, int] | None, tile_overlap: tuple[int, int], cache_frames: int,
                 speed: Speed = Speed()) -> None:
        speed.check_device(device)
        self.device = device
        self.dtype = PRECISIONS[precision]
        self.speed = speed
        self.batch_align = device.type == "cuda" if speed.batch_align is None else speed.batch_align
        self.memory_format = torch.channels_last if speed.channels_last else torch.contiguous_format
        self.model = model.to(device=device, dtype=self.dtype, memory_format=self.memory_format).eval()
        for m in self.model.modules():
            if isinstance(m, DCNv2Pack):
                m.check_offsets = speed.check_offsets
        self.cfg = model.config
        self.radius = self.cfg.num_frame // 2
        self.width, self.height = width, height
        self.tile_overlap = tile_overlap
        self.tiles = make_tiles(width, height, tile, tile_overlap)
        self.cache_frames = cache_frames
        self.cache: FrameCache[FrameWork] = FrameCache(cache_frames * len(self.tiles))
        self._lock = threading.Lock()
        # On the CPU, torch already spreads each operation over every core; two callbacks
        # computing at once would oversubscribe them (measured: far slower), so they take turns.
        self._cpu_turn = threading.Lock() if device.type == "cpu" else contextlib.nullcontext()
        self._warned_oom = False
        self._streams = ([torch.cuda.Stream(device) for _ in range(speed.num_streams)]
                         if device.type == "cuda" and speed.num_streams > 1 else [])
        self._next_stream = itertools.count()
        self.graphs = (GraphCache(self._window_net, self._buffer, device) if speed.cuda_graphs else None)

    # ---- per frame --------------------------------------------------------------------------
    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        m = self.cfg.multiple
        h, w = x.shape[-2:]
        ph, pw = -h % m, -w % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    def frame_work(self, rgb: torch.Tensor, tile: Tile) -> FrameWork:
        """One frame's tile (RGB (3, h, w), any device) on the device, and its features."""
        region = rgb[:, tile.ry0:tile.ry1, tile.rx0:tile.rx1]
        x = region.unsqueeze(0).to(self.device, self.dtype, non_blocking=True)
        x = self._pad(x).contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            feats = self.model.extract_features(x)
            as_nbr, as_ref = self.model.split_offset_conv1(feats)
        work = FrameWork(x, feats, as_nbr, as_ref)
        if self.device.type == "cuda":
            work.ready = torch.cuda.Event()
            work.ready.record(torch.cuda.current_stream(self.device))
        return work

    # ---- per window ---------------------------------------------------------------------------
    def _use(self, work: FrameWork) -> None:
        """Make the current CUDA stream wait for a frame computed on another stream."""
        if work.ready is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(work.ready)
            for t in (work.rgb, *work.feats, *work.as_nbr, *work.as_ref):
                t.record_stream(stream)

    @staticmethod
    def _parts(works: list[FrameWork], center: FrameWork) -> list[list[torch.Tensor]]:
        """A window's inputs to ``_window_net``, each a list of tensors to stack along the batch."""
        return [*([w.feats[k] for w in works] for k in range(3)), *([w.as_nbr[k] for w in works] for k in range(3)),
                *([center.as_ref[k]] for k in range(3)), [center.feats[0]], [center.rgb]]

    def _buffer(self, shape: torch.Size) -> torch.Tensor:
        return torch.empty(shape, device=self.device, dtype=self.dtype, memory_format=self.memory_format)

    def _window_net(self, nbr0: torch.Tensor, nbr1: torch.Tensor, nbr2: torch.Tensor, an0: torch.Tensor,
                    an1: torch.Tensor, an2: torch.Tensor, ar0: torch.Tensor, ar1: torch.Tensor, ar2: torch.Tensor,
                    ref_l1: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """The per-window network: each frame's features and ``offset_conv1`` halves stacked
        over the window (t, C, h, w), the centre's reference halves, L1 features and RGB
        (1, ...) → the restored centre frame (1, 3, H, W)."""
        nbr = [nbr0, nbr1, nbr2]
        first = [a + r for a, r in zip((an0, an1, an2), (ar0, ar1, ar2))]
        align = self.model.pcd_align.align_from_first_offsets
        t = nbr0.shape[0]
        if self.batch_align:
            aligned = align(nbr, ref_l1.expand(t, -1, -1, -1), first)
        else:
            aligned = torch.cat([align([f[j:j + 1] for f in nbr], ref_l1, [f[j:j + 1] for f in first])
                                 for j in range(t)])
        return self.model.reconstruct(self.model.fuse(aligned.unsqueeze(0)), rgb)

    def window_output(self, works: list[FrameWork], center: FrameWork) -> torch.Tensor:
        """The restored centre frame (1, 3, H, W) of a window of per-frame work."""
        with torch.inference_mode():
            for w in {id(w): w for w in [*works, center]}.values():
                self._use(w)
            parts = self._parts(works, center)
            if self.graphs is not None:
                shapes = [torch.Size((sum(x.shape[0] for x in p), *p[0].shape[1:])) for p in parts]
                return self.graphs(shapes, lambda bufs: [torch.cat(p, out=o) for o, p in zip(bufs, parts)])
            return self._window_net(*(torch.cat(p) if len(p) > 1 else p[0] for p in parts))

    def restore(self, window: list[int], center: int, get_rgb: Callable[[int], torch.Tensor]) -> torch.Tensor:
        """Output frame for ``window`` (source indices; ``center`` among them): RGB (3, H, W) on the device.

        ``get_rgb(i)`` gives source frame i as RGB (3, h, w); it is called
        only for frames whose work is not cached. On CUDA out of memory, the engine
        switches to tiles of half the size (saying so once on stderr) and retries.
        """
        while True:
            try:
                with self._cpu_turn:
                    return self._restore(window, center, get_rgb)
            except torch.cuda.OutOfMemoryError:
                if not self._shrink_tiles():
                    raise

    def _shrink_tiles(self) -> bool:
        with self._lock:
            core = self.tiles[0]
            tw, th = core.x1 - core.x0, core.y1 - core.y0
            new = (max(64, (tw // 2 + 3) // 4 * 4), max(64, (th // 2 + 3) // 4 * 4))
            if new[0] >= tw and new[1] >= th:
                return False
            self.tiles = make_tiles(self.width, self.height, new, self.tile_overlap)
            self.cache = FrameCache(self.cache_frames * len(self.tiles))
            if self.graphs is not None:
                self.graphs.clear()
            torch.cuda.empty_cache()
            if not self._warned_oom:
                self._warned_oom = True
                print(f"edvr: CUDA ran out of memory; processing in tiles of {new[0]}x{new[1]} "
                      f"(overlap {self.tile_overlap[0]}x{self.tile_overlap[1]}) from now on", file=sys.stderr)
            return True

    @contextlib.contextmanager
    def request_context(self) -> Iterator[None]:
        """Context for one request's upload, compute and download. On CUDA: the engine's device
        made current (VapourSynth's worker threads start on device 0, and events, streams and
        graph captures follow the current device) and, with ``num_streams`` > 1, the next stream
        of the pool, so requests on different streams overlap."""
        if self.device.type != "cuda":
            yield
            return
        with torch.cuda.device(self.device):
            if not self._streams:
                yield
                return
            with torch.cuda.stream(self._streams[next(self._next_stream) % len(self._streams)]):
                yield

    def _restore(self, window: list[int], center: int, get_rgb: Callable[[int], torch.Tensor]) -> torch.Tensor:
        s = self.cfg.scale
        out = torch.empty(3, self.height * s, self.width * s, device=self.device, dtype=self.dtype)
        for ti, tile in enumerate(self.tiles):
            works = {i: self.cache.get((ti, i), lambda i=i, tile=tile: self.frame_work(get_rgb(i), tile))
                     for i in dict.fromkeys(window)}
            result = self.window_output([works[i] for i in window], works[center])
            oy, ox = (tile.y0 - tile.ry0) * s, (tile.x0 - tile.rx0) * s
            h, w = (tile.y1 - tile.y0) * s, (tile.x1 - tile.x0) * s
            out[:, tile.y0 * s:tile.y1 * s, tile.x0 * s:tile.x1 * s] = result[0, :, oy:oy + h, ox:ox + w]
        return out

