"""Runs EDVR on windows of frames, computing each frame's own work once.

Per source frame (and tile) the frame cache keeps the frame's ``FrameFeatures``
(``edvr_vs.nn.edvr``): the padded RGB tensor on the device, its L1/L2/L3 features and
the frame-only halves of each level's ``offset_conv1``. A window then costs the
network's per-window part (``EDVR.restore_window``): the PCD alignment of its 2N+1
frames, the fusion and the reconstruction.

Frames are always processed one at a time (batch 1) and windows always the same
way, so an output frame does not depend on the order or concurrency of requests:
on the CPU the results are bitwise reproducible.

The engine owns what is about running, not about the network: the frame cache,
tiles, CUDA streams and CUDA graphs; ``Speed`` (``edvr_vs.speed``) switches each
fast path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from edvr_vs.frame_cache import FrameCache
from edvr_vs.graphs import GraphCache
from edvr_vs.numerics import numerics
from edvr_vs.os_support import say
from edvr_vs.selfcheck import KernelCheck, check_deform_sample, check_deform_sample_v2
from edvr_vs.nn.edvr import EDVR, FrameFeatures, WindowInputs, pad_to_multiple
from edvr_vs.speed import Speed
from edvr_vs.turns import LowestFirst

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DCN_BACKENDS = {"deform_sample": "cupy_v1", "deform_sample_v2": "cupy_v2"}  # a sampling kernel's own backend
CACHE_MEMORY_FRACTION = 0.5  # on CUDA, the share of free device memory the frame cache may fill
MIN_TILE = 64  # the out-of-memory fallback halves tiles down to this size (input pixels)


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


@dataclass(frozen=True)
class TilePlan:
    """How frames are cut, and how far the out-of-memory fallback has gone under this cut.

    ``generation`` is part of every frame-cache key, so work done for one plan's tiles is
    never found under another's. A request remembers the plan it started with; only an
    out-of-memory error under the current plan moves the fallback on a step (evict the
    cache down to one window per tile, then halve the tiles), so concurrent failures of one
    plan relieve it once."""

    generation: int
    tiles: tuple[Tile, ...]
    evicted: bool = False  # the frame cache is already down to one window per tile


def is_out_of_memory(e: BaseException) -> bool:
    """CUDA ran out of memory: torch's allocator, or a library's workspace (cuDNN, cuBLAS)."""
    text = str(e)
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in text or "ALLOC_FAILED" in text


def cache_frames_for(per_frame_bytes: int, free_bytes: int, tiles: int, window: int, wanted: int) -> int:
    """Frames per tile the frame cache may hold on CUDA: as many of ``wanted`` as fit in
    ``CACHE_MEMORY_FRACTION`` of ``free_bytes`` at ``per_frame_bytes`` per tile's frame, never
    fewer than one ``window``."""
    fit = int(CACHE_MEMORY_FRACTION * free_bytes) // max(1, per_frame_bytes * tiles)
    return max(window, min(wanted, fit))


@dataclass(frozen=True)
class CachedFrame:
    """A frame cache entry: one frame's (tile's) features, and on CUDA the event of the stream that computed them."""

    features: FrameFeatures
    ready: torch.cuda.Event | None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.features.tensors())


class Engine:
    """One EDVR model on one device at one precision, with its frame cache."""

    def __init__(self, model: EDVR, device: torch.device, precision: str, *, width: int, height: int,
                 tile: tuple[int, int] | None, tile_overlap: tuple[int, int], cache_frames: int,
                 speed: Speed = Speed()) -> None:
        speed.check_device(device)
        self.device = device
        self.dtype = PRECISIONS[precision]
        self.speed = speed
        self.batch_align = speed.resolved_batch_align(device)
        self.memory_format = torch.channels_last if speed.channels_last else torch.contiguous_format
        self.model = model.to(device=device, dtype=self.dtype, memory_format=self.memory_format).eval()
        self.model.set_dcn(check_offsets=speed.check_offsets, autotune=speed.autotune)
        self.model.set_fused_convs(speed.fused_convs)
        # Which path each CUDA kernel takes here (edvr_vs.selfcheck); the filter adds its frame I/O's.
        self.kernel_checks: list[KernelCheck] = []
        if device.type == "cuda":
            self.use_kernel_check(check_deform_sample(device, self.dtype))
            self.use_kernel_check(check_deform_sample_v2(device, self.dtype))
        self.cfg = model.config
        self.width, self.height = width, height
        self.tile_overlap = tile_overlap
        self.plan = TilePlan(0, tuple(make_tiles(width, height, tile, tile_overlap)))
        self.window_frames = self.cfg.num_frame
        self.cache_frames = cache_frames  # per tile, wanted; on CUDA cut to what free memory holds
        self.frame_cache: FrameCache[CachedFrame] = FrameCache(cache_frames * len(self.plan.tiles))
        self._sized = device.type != "cuda"
        self._lock = threading.Lock()
        # On the CPU, torch already spreads each operation over every core; two callbacks
        # computing at once would oversubscribe them (measured: far slower), so they take turns,
        # lowest output frame first (edvr_vs.turns).
        self._cpu_turns = LowestFirst() if device.type == "cpu" else None
        self._warned_oom = False
        self.relief_steps: list[str] = []  # what the out-of-memory fallback did, in order
        self._streams = ([torch.cuda.Stream(device) for _ in range(speed.num_streams)]
                         if device.type == "cuda" and speed.num_streams > 1 else [])
        self._next_stream = itertools.count()
        self.graphs = (GraphCache(self._window_net, self._buffer, device) if speed.cuda_graphs else None)

    @property
    def tiles(self) -> tuple[Tile, ...]:
        return self.plan.tiles

    def use_kernel_check(self, check: KernelCheck) -> None:
        """Record a kernel's self-check; a failed deformable-sampling kernel gives way to the other one,
        and when both failed to torch's sampling."""
        self.kernel_checks.append(check)
        if check.kernel in DCN_BACKENDS and not check.ok:
            failed = {c.kernel for c in self.kernel_checks if not c.ok}
            left = [k for k in DCN_BACKENDS if k not in failed]
            self.model.set_dcn(backend=DCN_BACKENDS[left[0]] if len(left) == 1 else "torch")

    # ---- per frame --------------------------------------------------------------------------
    def frame_features(self, rgb: torch.Tensor, tile: Tile) -> CachedFrame:
        """One frame's tile (RGB (3, h, w), any device) on the device, and its features."""
        region = rgb[:, tile.ry0:tile.ry1, tile.rx0:tile.rx1]
        x = region.unsqueeze(0).to(self.device, self.dtype, non_blocking=True)
        x = pad_to_multiple(x, self.cfg.multiple).contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            features = self.model.frame_features(x)
        ready = None
        if self.device.type == "cuda":
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(self.device))
        frame = CachedFrame(features, ready)
        if not self._sized:
            self._size_cache(frame)
        return frame

    def _size_cache(self, frame: CachedFrame) -> None:
        """On CUDA, the first computed frame's footprint and the free memory set the cache's size."""
        with self._lock:
            if self._sized:
                return
            self._sized = True
            free, _ = torch.cuda.mem_get_info(self.device)
            free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
            tiles = len(self.plan.tiles)
            frames = cache_frames_for(frame.nbytes, free, tiles, self.window_frames, self.cache_frames)
            self.frame_cache.set_capacity(frames * tiles)

    # ---- per window ---------------------------------------------------------------------------
    def _use(self, frame: CachedFrame) -> None:
        """Make the current CUDA stream wait for a frame computed on another stream."""
        if frame.ready is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(frame.ready)
            for t in frame.features.tensors():
                t.record_stream(stream)

    def _buffer(self, shape: torch.Size) -> torch.Tensor:
        return torch.empty(shape, device=self.device, dtype=self.dtype, memory_format=self.memory_format)

    def _window_net(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``EDVR.restore_window`` on the tensors of a ``WindowInputs``, in its order (what graphs capture)."""
        return self.model.restore_window(WindowInputs(*inputs), batch_align=self.batch_align)

    def window_output(self, frames: list[CachedFrame], center: CachedFrame) -> torch.Tensor:
        """The restored centre frame (1, 3, H, W) of a window of cached frames."""
        with torch.inference_mode():
            for f in {id(f): f for f in [*frames, center]}.values():
                self._use(f)
            features = [f.features for f in frames]
            if self.graphs is not None:
                shapes = [torch.Size((sum(x.shape[0] for x in p), *p[0].shape[1:]))
                          for p in WindowInputs.parts(features, center.features)]
                return self.graphs(shapes, lambda bufs: WindowInputs.gather(features, center.features,
                                                                            out=WindowInputs(*bufs)))
            if not self.batch_align:
                return self.model.restore_frames(features, center.features)
            return self._window_net(*WindowInputs.gather(features, center.features))

    def restore(self, window: list[int], center: int, get_rgb: Callable[[int], torch.Tensor]) -> torch.Tensor:
        """Output frame for ``window`` (source indices; ``center`` among them): RGB (3, H, W) on the device.

        ``get_rgb(i)`` gives source frame i as RGB (3, h, w); it is called at most once per
        frame and request (every tile cuts its region from that one upload), and only for
        frames whose work is not cached. On CUDA out of memory the engine relieves itself a step
        (``_relieve``: evict the frame cache to one window per tile, then halve the tiles; said
        once on stderr) and retries.
        """
        rgb_of: dict[int, torch.Tensor] = {}

        def rgb(i: int) -> torch.Tensor:
            if i not in rgb_of:
                rgb_of[i] = get_rgb(i)
            return rgb_of[i]

        while True:
            plan = self.plan
            try:
                turn = self._cpu_turns.turn(center) if self._cpu_turns else contextlib.nullcontext()
                with turn, numerics(self.device, self.dtype, self.speed.autotune):
                    return self._restore(plan, window, center, rgb)
            except RuntimeError as e:  # torch.cuda.OutOfMemoryError is one
                if not (is_out_of_memory(e) and self._relieve(plan)):
                    raise

    def _relieve(self, plan: TilePlan) -> bool:
        """One step down after running out of memory under ``plan``; False when none is left."""
        with self._lock:
            self._sized = True  # from now on only the fallback sizes the cache
            if plan is not self.plan:  # another request already relieved this plan
                return True
            window_cache = self.window_frames * len(plan.tiles)
            if not plan.evicted and len(self.frame_cache) > window_cache:
                self.frame_cache.set_capacity(window_cache)
                self.plan = dataclasses.replace(plan, evicted=True)
                what = f"keeping one window of frames per tile ({self.window_frames})"
            else:
                core = plan.tiles[0]
                tw, th = core.x1 - core.x0, core.y1 - core.y0
                new = (max(MIN_TILE, (tw // 2 + 3) // 4 * 4), max(MIN_TILE, (th // 2 + 3) // 4 * 4))
                if new[0] >= tw and new[1] >= th:
                    return False
                tiles = tuple(make_tiles(self.width, self.height, new, self.tile_overlap))
                self.plan = TilePlan(plan.generation + 1, tiles, evicted=True)
                self.frame_cache.clear()
                self.frame_cache.set_capacity(self.window_frames * len(tiles))
                if self.graphs is not None:
                    self.graphs.clear()
                what = (f"processing in tiles of {new[0]}x{new[1]} "
                        f"(overlap {self.tile_overlap[0]}x{self.tile_overlap[1]})")
            self.relief_steps.append(what)
            torch.cuda.empty_cache()
            if not self._warned_oom:
                self._warned_oom = True
                say(f"edvr: CUDA ran out of memory; {what} from now on\n")
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

    def _restore(self, plan: TilePlan, window: list[int], center: int,
                 rgb: Callable[[int], torch.Tensor]) -> torch.Tensor:
        s = self.cfg.scale
        out = torch.empty(3, self.height * s, self.width * s, device=self.device, dtype=self.dtype)
        for ti, tile in enumerate(plan.tiles):
            frames = {i: self.frame_cache.get((plan.generation, ti, i),
                                              lambda i=i, tile=tile: self.frame_features(rgb(i), tile))
                      for i in dict.fromkeys(window)}
            result = self.window_output([frames[i] for i in window], frames[center])
            oy, ox = (tile.y0 - tile.ry0) * s, (tile.x0 - tile.rx0) * s
            h, w = (tile.y1 - tile.y0) * s, (tile.x1 - tile.x0) * s
            out[:, tile.y0 * s:tile.y1 * s, tile.x0 * s:tile.x1 * s] = result[0, :, oy:oy + h, ox:ox + w]
        return out
