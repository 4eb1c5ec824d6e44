"""The VapourSynth filter: ``edvr(clip, ...)`` → a clip restored by EDVR; validation and wiring.

Pipeline (all built from core filters, so VapourSynth parallelises and caches):

1. Frame I/O (``edvr_vs.frame_io``) chooses the frames the callback reads: RGBS from zimg
   on the CPU, the raw planes on CUDA (converted there by a kernel).
2. One clip per window position (2N+1 of them, ``edvr_vs.window.splice_windows``) delivers
   each output frame's window to a ``ModifyFrame`` callback (one per request, inside
   ``FrameEval``, so up to ``core.num_threads`` callbacks run at once).
3. The callback applies scene cuts (``edvr_vs.window``), asks the ``Engine`` for the
   output (per-frame work in its frame cache) and writes a frame that carries the centre
   frame's props.
4. Frame I/O converts to the output format (``edvr_vs.colour``'s rule).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import vapoursynth as vs

from edvr_vs.arguments import (Invalid, check_clip, check_padding, check_scene_change, default_padding, device_of,
                               output_format, pair, resolve_weights)
from edvr_vs.colour import matrix_number
from edvr_vs.engine import PRECISIONS, Engine
from edvr_vs.frame_io import frame_io_for
from edvr_vs.nn.edvr import EDVR
from edvr_vs.speed import Speed, describe
from edvr_vs.window import output_window, splice_windows

core = vs.core

DEFAULT_OVERLAP = 32


@dataclass(frozen=True, kw_only=True)
class Options:
    """Every runtime choice of one ``edvr()`` call, resolved and validated."""

    device: torch.device
    precision: str
    padding: str | None
    scene_change: bool
    tile: tuple[int, int] | None
    tile_overlap: tuple[int, int]
    speed: Speed
    format: vs.VideoFormat
    matrix: int | None


def edvr(
    clip: vs.VideoNode,
    *,
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    device: str | None = None,
    device_index: int = 0,
    precision: str | None = None,
    padding: str | None = None,
    scene_change: bool = True,
    tile: Sequence[int] | int | None = None,
    tile_overlap: Sequence[int] | int | None = None,
    format: vs.VideoFormat | vs.PresetVideoFormat | int | None = None,
    matrix: str | int | None = None,
    num_streams: int = Speed.num_streams,
    cuda_graphs: bool = Speed.cuda_graphs,
    pinned_memory: bool = Speed.pinned_memory,
    channels_last: bool = Speed.channels_last,
    fused_convs: bool = Speed.fused_convs,
    batch_align: bool | None = Speed.batch_align,
    autotune: bool = Speed.autotune,
    check_offsets: bool = Speed.check_offsets,
) -> vs.VideoNode:
    """Restore ``clip`` with EDVR: video super-resolution (×4) or deblurring (×1).

    Args:
        clip: RGB or YUV (4:4:4, 4:2:2, 4:2:0), 8–16-bit integer, half or float, any size and length.
        model: a zoo name (``edvr_vs.models()``); default: the embedded model.
        weights: a checkpoint path (BasicSR, mmagic or original-EDVR layout); not with ``model``.
        device: ``"cuda"``, ``"cuda:N"`` or ``"cpu"``; default: CUDA if available.
        device_index: the GPU when ``device="cuda"``.
        precision: ``"fp16"`` (CUDA only), ``"bf16"`` or ``"fp32"``; default: fp16 on CUDA, fp32 on the CPU.
        padding: clip-edge padding, ``replicate``, ``reflection``, ``reflection_circle`` or ``circle``;
            default: the model's own.
        scene_change: keep each window inside its scene (``_SceneChangePrev``/``_SceneChangeNext``).
        tile: ``(w, h)`` in input pixels, positive multiples of 4; default: whole frames.
        tile_overlap: ``(w, h)`` (or one int) read around each tile, multiples of 4, may be 0;
            default 32.
        format: the output format (RGB or YUV, any depth); default: the input's.
        matrix: the input's YUV matrix, ``709``, ``601``, ``470bg``, ``170m``, ``2020ncl``, ``fcc``,
            ``240m`` (or the ``_Matrix`` number); default: each frame's ``_Matrix``.

    Speed switches (``edvr_vs.speed.Speed``; none changes the frames beyond rounding):
{speed}

    Returns:
        A clip ×scale in width and height (×4 for SR models, ×1 for ``hr_in`` deblurring models),
        same length, frame rate and frame props, in ``format``.

    Raises:
        vs.Error: ``"edvr: ..."`` for any bad argument, naming it, before any work.
    """
    return _restore(dict(locals()))[0]


if edvr.__doc__:  # None under python -OO
    edvr.__doc__ = edvr.__doc__.replace("{speed}", describe())
_SIGNATURE = inspect.signature(edvr)


def edvr_with_engine(clip: vs.VideoNode, **kwargs: object) -> tuple[vs.VideoNode, Engine]:
    """Internal seam for tests and benchmarks (not exported by ``edvr_vs``): ``edvr(clip, **kwargs)``
    and the ``Engine`` behind it (frame-cache counters, tiles, the model on its device)."""
    bound = _SIGNATURE.bind(clip, **kwargs)
    bound.apply_defaults()
    return _restore(bound.arguments)


def two_stage(clip: vs.VideoNode, *, stage1: str | os.PathLike[str], stage2: str | os.PathLike[str],
              **kwargs: object) -> vs.VideoNode:
    """EDVR's two-stage restoration (paper §3.4): stage 2, an ``hr_in`` model, refines stage 1's output.

    ``stage1`` and ``stage2`` are zoo names or checkpoint paths; other keyword
    arguments go to both ``edvr()`` calls. Stage 2 draws stage-1 frames through its
    own window and frame cache, so each stage-1 frame is computed once per stage.
    """
    def source(s: str | os.PathLike[str]) -> dict[str, object]:
        if isinstance(s, str) and not os.path.exists(s):
            return {"model": s}
        return {"weights": s}

    first = edvr(clip, **source(stage1), **kwargs)
    return edvr(first, **source(stage2), **kwargs)


# ---- validation -------------------------------------------------------------------------------------

def _options(clip: vs.VideoNode, a: dict[str, object]) -> Options:
    """``edvr()``'s arguments ``a`` → ``Options``."""
    dev = device_of(a["device"], a["device_index"])
    precision = a["precision"]
    if precision is None:
        precision = "fp16" if dev.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise Invalid(f"'precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if dev.type == "cpu" and precision == "fp16":
        raise Invalid("'precision' 'fp16' needs CUDA; on the CPU use 'fp32' or 'bf16'")
    padding = check_padding(a["padding"])
    scene_change = check_scene_change(a["scene_change"])
    tile = None if a["tile"] is None else pair(a["tile"], "tile", allow_zero=False)
    overlap = ((DEFAULT_OVERLAP, DEFAULT_OVERLAP) if a["tile_overlap"] is None
               else pair(a["tile_overlap"], "tile_overlap", allow_zero=True))
    try:
        speed = Speed(**{f.name: a[f.name] for f in dataclasses.fields(Speed)})
        speed.check_device(dev)
        matrix = None if a["matrix"] is None else matrix_number(a["matrix"])
    except ValueError as e:
        raise Invalid(str(e)) from None
    return Options(device=dev, precision=precision, padding=padding, scene_change=scene_change, tile=tile,
                   tile_overlap=overlap, speed=speed, format=output_format(a["format"], clip), matrix=matrix)


# ---- wiring ----------------------------------------------------------------------------------------

def _restore(a: dict[str, object]) -> tuple[vs.VideoNode, Engine]:
    """``edvr()``'s arguments → the output clip and its engine; bad arguments raise ``vs.Error``."""
    try:
        clip = check_clip(a["clip"])
        opts = _options(clip, a)
        net, zoo_padding = resolve_weights(a["model"], a["weights"])
        if opts.padding is None:
            opts = dataclasses.replace(opts, padding=zoo_padding or default_padding(net))
    except Invalid as e:
        raise vs.Error(f"edvr: {e}") from None
    return _build(clip, net, opts)


_graphs_built = 0  # edvr() graphs built by this process


def graphs_built() -> int:
    """How many ``edvr()`` graphs this process has built (a script loader asks: did the script call it?)."""
    return _graphs_built


def _build(clip: vs.VideoNode, net: EDVR, opts: Options) -> tuple[vs.VideoNode, Engine]:
    global _graphs_built
    _graphs_built += 1
    cfg = net.config
    radius, padding, length = cfg.radius, opts.padding, clip.num_frames
    engine = Engine(net, opts.device, opts.precision, width=clip.width, height=clip.height, tile=opts.tile,
                    tile_overlap=opts.tile_overlap, cache_frames=2 * radius + 1 + 2 * core.num_threads,
                    speed=opts.speed)
    io, checks = frame_io_for(clip, fmt=opts.format, matrix=opts.matrix, device=opts.device, dtype=engine.dtype,
                              pinned_memory=opts.speed.pinned_memory)
    for check in checks:
        engine.use_kernel_check(check)
    windows = splice_windows(io.source, radius, padding)
    blank = io.blank(clip.width * cfg.scale, clip.height * cfg.scale)

    def restore(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        window, by_index = output_window(n, radius, length, padding, f[1:], scene_change=opts.scene_change)
        fout = f[0].copy()
        props = fout.props
        for key, value in by_index[n].props.items():
            if key != "_ColorRange":
                props[key] = value
        with engine.request_context():
            io.write(engine.restore(window, n, lambda i: io.read(by_index[i])), fout)
        return fout

    def per_request(n: int) -> vs.VideoNode:
        return core.std.ModifyFrame(blank, clips=[blank, *windows], selector=restore)

    return io.finish(core.std.FrameEval(blank, per_request)), engine
