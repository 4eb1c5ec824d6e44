"""The VapourSynth filter: ``edvr(clip, ...)`` → a clip restored by EDVR.

Pipeline (all built from core filters, so VapourSynth parallelises and caches):

1. ``resize`` (zimg) converts the clip to planar RGB float (RGBS): bilinear
   chroma upsampling, matrix and range from each frame's
   ``_Matrix``/``_Range`` props (``matrix=`` overrides; unspecified means
   BT.709 at 1280×720 and above, BT.601 below).
2. One clip per window position (2N+1 of them), spliced from the RGB clip with
   the clip-edge padding rule, delivers each output frame's window to a
   ``ModifyFrame`` callback (one per request, inside ``FrameEval``, so up to
   ``core.num_threads`` callbacks run at once).
3. The callback applies scene cuts (``edvr_vs.window``), asks the ``Engine`` for the
   output (per-frame work cached in its ring buffer) and writes an RGBS frame that
   carries the centre frame's props.
4. ``resize`` converts back to the output format (default: the input's), rounding
   and clamping integers, with the matrix, range and chroma siting of the
   input's frame 0 (or ``matrix=``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import vapoursynth as vs

from edvr_vs.checkpoint import CheckpointError, load_model
from edvr_vs.engine import PRECISIONS, Engine, Speed
from edvr_vs.window import PADDING_MODES, scene_window, window_indices

core = vs.core

MATRICES = {"709": 1, "601": 6, "470bg": 5, "170m": 6, "2020ncl": 9, "fcc": 4, "240m": 7}
DEFAULT_OVERLAP = 32


class _Invalid(Exception):
    """A bad argument; becomes ``vs.Error("edvr: ...")``."""


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


def _pair(value: object, name: str, *, allow_zero: bool) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
    if ok:
        ok = all((v >= 0 if allow_zero else v > 0) and v % 4 == 0 for v in value)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise _Invalid(f"{name!r} must be two {kind} multiples of 4 (width, height), got {value!r}")
    return int(value[0]), int(value[1])


def _device(device: object, device_index: object) -> torch.device:
    if not isinstance(device_index, int) or isinstance(device_index, bool) or device_index < 0:
        raise _Invalid(f"'device_index' must be an int ≥ 0, got {device_index!r}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str) or not (device in ("cpu", "cuda") or
                                           (device.startswith("cuda:") and device[5:].isdigit())):
        raise _Invalid(f"'device' must be 'cuda', 'cuda:N' or 'cpu', got {device!r}")
    if device == "cpu":
        return torch.device("cpu")
    index = int(device[5:]) if ":" in device else device_index
    if not torch.cuda.is_available():
        raise _Invalid(f"'device' is {device!r} but CUDA is not available here (torch sees no GPU); use 'cpu'")
    count = torch.cuda.device_count()
    if index >= count:
        raise _Invalid(f"CUDA device index {index} is out of range: {count} device(s) present")
    return torch.device("cuda", index)


def _format(fmt: object, clip: vs.VideoNode) -> vs.VideoFormat:
    if fmt is None:
        return clip.format
    try:
        out = core.get_video_format(fmt)  # a preset, a format id or a VideoFormat
    except (vs.Error, TypeError, ValueError):
        raise _Invalid(f"'format' must be a VapourSynth video format (e.g. vs.YUV420P10), got {fmt!r}") from None
    if out is None or out.id == 0:
        raise _Invalid(f"'format' must be a VapourSynth video format (e.g. vs.YUV420P10), got {fmt!r}")
    if out.color_family not in (vs.RGB, vs.YUV):
        raise _Invalid(f"'format' must be RGB or YUV, got {out.name}")
    return out


def _matrix(matrix: object) -> int | None:
    if matrix is None:
        return None
    if isinstance(matrix, str) and matrix in MATRICES:
        return MATRICES[matrix]
    if isinstance(matrix, int) and not isinstance(matrix, bool) and matrix in set(MATRICES.values()):
        return matrix
    raise _Invalid(f"'matrix' must be one of {', '.join(MATRICES)} (or its _Matrix number), got {matrix!r}")


def _check_clip(clip: object) -> vs.VideoNode:
    if not isinstance(clip, vs.VideoNode):
        raise _Invalid(f"'clip' must be a video clip (vs.VideoNode), got {type(clip).__name__}")
    if clip.format is None or clip.format.id == 0:
        raise _Invalid("'clip' has a variable format; convert it to one format first (e.g. resize.Bicubic(format=...))")
    if clip.width == 0 or clip.height == 0:
        raise _Invalid("'clip' has a variable resolution; resize it to one size first")
    if clip.format.color_family not in (vs.RGB, vs.YUV):
        raise _Invalid(f"'clip' must be RGB or YUV, got {clip.format.name} (GRAY has no colour for EDVR)")
    return clip


def _resolve_weights(model: object, weights: object) -> tuple[torch.nn.Module, str | None]:
    """The network, and the zoo's padding mode for it (None for a plain checkpoint)."""
    from edvr_vs import zoo

    if model is not None and weights is not None:
        raise _Invalid("give either 'model' (a zoo name) or 'weights' (a checkpoint path), not both")
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise _Invalid(f"'weights' must be a checkpoint path, got {type(weights).__name__}")
        path, padding = weights, None
    else:
        if model is None:
            model = zoo.default_model()
            if model is None:
                raise _Invalid("no default model is shipped with this version; pass model= (a zoo name: "
                               f"{', '.join(zoo.names())}) or weights= (a checkpoint path)")
        if not isinstance(model, str) or model not in zoo.names():
            raise _Invalid(f"'model' must be one of {', '.join(zoo.names())}, got {model!r}")
        try:
            path = zoo.weights_path(model)
        except zoo.ZooError as e:
            raise _Invalid(f"'model': {e}") from None
        padding = zoo.entry(model).padding
    try:
        return load_model(path), padding
    except CheckpointError as e:
        raise _Invalid(f"'weights': {e}") from None


def _speed(dev: torch.device, switches: dict[str, object]) -> Speed:
    try:
        speed = Speed(**switches)
        speed.check_device(dev)
    except ValueError as e:
        raise _Invalid(str(e)) from None
    return speed


def _options(clip: vs.VideoNode, *, device: object, device_index: object, precision: object, padding: object,
             scene_change: object, tile: object, tile_overlap: object, format: object, matrix: object,
             speed: dict[str, object]) -> Options:
    dev = _device(device, device_index)
    if precision is None:
        precision = "fp16" if dev.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise _Invalid(f"'precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if dev.type == "cpu" and precision == "fp16":
        raise _Invalid("'precision' 'fp16' needs CUDA; on the CPU use 'fp32' or 'bf16'")
    if padding is not None and padding not in PADDING_MODES:
        raise _Invalid(f"'padding' must be one of {', '.join(PADDING_MODES)}, got {padding!r}")
    if not isinstance(scene_change, bool):
        raise _Invalid(f"'scene_change' must be True or False, got {scene_change!r}")
    tile_pair = None if tile is None else _pair(tile, "tile", allow_zero=False)
    overlap = (DEFAULT_OVERLAP, DEFAULT_OVERLAP) if tile_overlap is None else _pair(tile_overlap, "tile_overlap",
                                                                                      allow_zero=True)
    return Options(device=dev, precision=precision, padding=padding, scene_change=scene_change, tile=tile_pair,
                   tile_overlap=overlap, speed=_speed(dev, speed), format=_format(format, clip),
                   matrix=_matrix(matrix))


def _default_matrix(width: int, height: int) -> int:
    return 1 if width >= 1280 or height >= 720 else 6


def _to_rgbs(clip: vs.VideoNode, matrix: int | None) -> vs.VideoNode:
    if clip.format.color_family == vs.RGB:
        return core.resize.Point(clip, format=vs.RGBS)
    if matrix is not None:
        clip = core.std.SetFrameProps(clip, _Matrix=matrix)
    return core.resize.Bilinear(clip, format=vs.RGBS, matrix_in=_default_matrix(clip.width, clip.height))


def _window_clips(rgb: vs.VideoNode, radius: int, padding: str) -> list[vs.VideoNode]:
    """One clip per window position; frame n of clip j is source frame window(n)[j]."""
    length = rgb.num_frames
    clips = []
    for j in range(2 * radius + 1):
        def pick(n: int) -> int:
            return window_indices(n, radius, 0, length - 1, padding)[j]

        head = range(0, min(radius, length))
        tail = range(max(length - radius, radius), length)
        pieces = [rgb[pick(n)] for n in head]
        if length - radius > radius:
            pieces.append(rgb[j:length - 2 * radius + j])
        pieces += [rgb[pick(n)] for n in tail]
        clips.append(core.std.Splice(pieces) if len(pieces) > 1 else pieces[0])
    return clips


def _planes(frame: vs.VideoFrame) -> np.ndarray:
    return np.stack([np.asarray(frame[p]) for p in range(3)])


def _frame0_colour(clip: vs.VideoNode) -> dict[str, int]:
    """Matrix, range and chroma siting of frame 0 (none if frame 0 cannot be read)."""
    try:
        props = clip.get_frame(0).props
    except vs.Error:
        return {}
    return {k: int(props[k]) for k in ("_Matrix", "_Range", "_ChromaLocation") if k in props}


@dataclass(frozen=True)
class _OutputColour:
    matrix: int
    full_range: bool
    chromaloc: int


def _output_colour(source: vs.VideoNode, matrix: int | None) -> _OutputColour:
    """Matrix, range and chroma siting of YUV output: ``matrix=`` or the input's frame 0 (else the defaults)."""
    colour = _frame0_colour(source) if source.format.color_family == vs.YUV else {}
    if matrix is None:
        matrix = colour.get("_Matrix", 2)
        if matrix not in MATRICES.values():
            matrix = _default_matrix(source.width, source.height)
    full = colour.get("_Range", int(vs.RANGE_LIMITED)) == int(vs.RANGE_FULL)
    loc = colour.get("_ChromaLocation", 0)
    return _OutputColour(matrix, full, loc if loc in (0, 1) else 0)


def _from_rgbs(rgb: vs.VideoNode, source: vs.VideoNode, fmt: vs.VideoFormat, matrix: int | None) -> vs.VideoNode:
    if fmt.id == vs.RGBS:
        return rgb
    if fmt.color_family == vs.RGB:
        return core.resize.Point(rgb, format=fmt.id)
    colour = _output_colour(source, matrix)
    return core.resize.Bilinear(rgb, format=fmt.id, matrix=colour.matrix, chromaloc=colour.chromaloc,
                                range=int(vs.RANGE_FULL if colour.full_range else vs.RANGE_LIMITED))


def _default_padding(net: torch.nn.Module) -> str:
    """Padding for a checkpoint outside the zoo: replicate with pre-deblur (BasicSR's deblur
    configurations), reflection_circle otherwise (its SR configurations)."""
    return "replicate" if net.config.with_predeblur else "reflection_circle"


def edvr_with_engine(
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
    format: object = None,
    matrix: str | int | None = None,
    num_streams: int = 1,
    cuda_graphs: bool = False,
    pinned_memory: bool = True,
    channels_last: bool = True,
    batch_align: bool | None = None,
    check_offsets: bool = False,
) -> tuple[vs.VideoNode, Engine]:
    """``edvr()`` that also returns its ``Engine`` (ring-buffer counters, for tests and benchmarks).

    Restore ``clip`` with EDVR; see the README for every parameter.

    Returns a clip ×scale in width and height (×4 for SR models, ×1 for ``hr_in``
    deblurring models), same length and frame rate, in ``format`` (default: the
    input's). Raises ``vs.Error("edvr: ...")`` for any bad argument, before any work.
    """
    try:
        clip = _check_clip(clip)
        opts = _options(clip, device=device, device_index=device_index, precision=precision, padding=padding,
                        scene_change=scene_change, tile=tile, tile_overlap=tile_overlap, format=format, matrix=matrix,
                        speed=dict(num_streams=num_streams, cuda_graphs=cuda_graphs, pinned_memory=pinned_memory,
                                   channels_last=channels_last, batch_align=batch_align,
                                   check_offsets=check_offsets))
        net, zoo_padding = _resolve_weights(model, weights)
        if opts.padding is None:
            opts = dataclasses.replace(opts, padding=zoo_padding or _default_padding(net))
    except _Invalid as e:
        raise vs.Error(f"edvr: {e}") from None
    return _build(clip, net, opts)


def edvr(clip: vs.VideoNode, **kwargs: object) -> vs.VideoNode:
    """Restore ``clip`` with EDVR (``edvr_with_engine`` documents the parameters)."""
    return edvr_with_engine(clip, **kwargs)[0]


class _ZimgIO:
    """CPU path: zimg converts to RGBS before the callback and back after it."""

    def __init__(self, clip: vs.VideoNode, opts: Options) -> None:
        self.source = clip
        self.opts = opts
        self.rgb = _to_rgbs(clip, opts.matrix)

    def frames_clip(self) -> vs.VideoNode:
        return self.rgb

    def blank(self, width: int, height: int) -> vs.VideoNode:
        return core.std.BlankClip(self.rgb, width=width, height=height, keep=True)

    def read(self, frame: vs.VideoFrame) -> torch.Tensor:
        return torch.from_numpy(_planes(frame))

    def write(self, out: torch.Tensor, fout: vs.VideoFrame) -> None:
        data = out.float().cpu().numpy()
        for p in range(3):
            np.copyto(np.asarray(fout[p]), data[p])
        fout.props["_Matrix"] = int(vs.MATRIX_RGB)
        fout.props["_Range"] = int(vs.RANGE_FULL)

    def finish(self, out: vs.VideoNode) -> vs.VideoNode:
        return _from_rgbs(out, self.source, self.opts.format, self.opts.matrix)


class _KernelIO:
    """CUDA path: raw planes travel to the GPU and back; ``kernels/convert.cu`` converts there,
    with the same arithmetic as the CPU path's zimg (bilinear chroma resampling)."""

    def __init__(self, clip: vs.VideoNode, opts: Options, dtype: torch.dtype) -> None:
        from edvr_vs.convert import PlaneFormat

        self.source, self.opts, self.device = clip, opts, opts.device
        self.dtype = torch.float16 if dtype == torch.float16 else torch.float32
        self.in_fmt = clip.format
        out_fmt = opts.format
        colour = _output_colour(clip, opts.matrix)
        self.out_pf = PlaneFormat.of(out_fmt, matrix=colour.matrix, chromaloc=colour.chromaloc,
                                     full_range=None if out_fmt.color_family == vs.RGB else colour.full_range)
        self.out_props = ({"_Matrix": colour.matrix,
                           "_Range": int(vs.RANGE_FULL if colour.full_range else vs.RANGE_LIMITED)}
                          if self.out_pf.is_yuv else {"_Matrix": int(vs.MATRIX_RGB)})

    def frames_clip(self) -> vs.VideoNode:
        return self.source

    def blank(self, width: int, height: int) -> vs.VideoNode:
        return core.std.BlankClip(self.source, width=width, height=height, format=self.opts.format.id, keep=True)

    def _in_format(self, frame: vs.VideoFrame):
        from edvr_vs.convert import PlaneFormat

        props = frame.props
        if self.in_fmt.color_family == vs.RGB:
            return PlaneFormat.of(self.in_fmt)
        matrix = self.opts.matrix or int(props.get("_Matrix", 2))
        if matrix not in MATRICES.values():
            matrix = _default_matrix(self.source.width, self.source.height)
        full = int(props.get("_Range", int(vs.RANGE_LIMITED))) == int(vs.RANGE_FULL)
        loc = int(props.get("_ChromaLocation", 0))
        return PlaneFormat.of(self.in_fmt, matrix=matrix, full_range=full, chromaloc=loc if loc in (0, 1) else 0)

    def _upload(self, plane: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        """A (read-only, row-padded) plane → a contiguous tensor on the device; one host copy."""
        host = torch.empty(plane.shape, dtype=dtype, pin_memory=self.opts.speed.pinned_memory)
        np.copyto(host.numpy(), plane)
        # From page-locked memory the copy is asynchronous; torch's caching host allocator
        # keeps the block until it is done.
        return host.to(self.device, non_blocking=True)

    def read(self, frame: vs.VideoFrame) -> torch.Tensor:
        from edvr_vs.convert import SAMPLE_TORCH, planes_to_rgb

        fmt = self._in_format(frame)
        planes = [self._upload(np.asarray(frame[p]), SAMPLE_TORCH[fmt.sample]) for p in range(3)]
        return planes_to_rgb(planes, fmt, self.dtype)

    def write(self, out: torch.Tensor, fout: vs.VideoFrame) -> None:
        from edvr_vs.convert import rgb_to_planes

        planes = rgb_to_planes(out.to(self.dtype), self.out_pf)
        if self.opts.speed.pinned_memory:
            hosts = [torch.empty(p.shape, dtype=p.dtype, pin_memory=True).copy_(p, non_blocking=True) for p in planes]
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(self.device))
            done.synchronize()  # this request's stream only: other streams keep running
        else:
            hosts = [p.cpu() for p in planes]
        for p, host in enumerate(hosts):
            np.copyto(np.asarray(fout[p]), host.numpy())
        for k, v in self.out_props.items():
            fout.props[k] = v

    def finish(self, out: vs.VideoNode) -> vs.VideoNode:
        return out


def _build(clip: vs.VideoNode, net: torch.nn.Module, opts: Options) -> tuple[vs.VideoNode, Engine]:
    cfg = net.config
    radius = cfg.num_frame // 2
    padding = opts.padding
    length = clip.num_frames
    engine = Engine(net, opts.device, opts.precision, width=clip.width, height=clip.height, tile=opts.tile,
                    tile_overlap=opts.tile_overlap, cache_frames=2 * radius + 1 + 2 * core.num_threads,
                    speed=opts.speed)
    io = _KernelIO(clip, opts, engine.dtype) if opts.device.type == "cuda" else _ZimgIO(clip, opts)
    windows = _window_clips(io.frames_clip(), radius, padding)
    blank = io.blank(clip.width * cfg.scale, clip.height * cfg.scale)

    def restore(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        delivered = window_indices(n, radius, 0, length - 1, padding)
        by_index = dict(zip(delivered, f[1:]))
        window = (scene_window(n, radius, length, padding, delivered, {i: fr.props for i, fr in by_index.items()})
                  if opts.scene_change else delivered)
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


def two_stage(clip: vs.VideoNode, *, stage1: str | os.PathLike[str], stage2: str | os.PathLike[str],
              **kwargs: object) -> vs.VideoNode:
    """EDVR's two-stage restoration (paper §3.4): stage 2, an ``hr_in`` model, refines stage 1's output.

    ``stage1`` and ``stage2`` are zoo names or checkpoint paths; other keyword
    arguments go to both ``edvr()`` calls. Stage 2 draws stage-1 frames through its
    own window and ring buffer, so each stage-1 frame is computed once per stage.
    """
    def source(s: str | os.PathLike[str]) -> dict[str, object]:
        if isinstance(s, str) and not os.path.exists(s):
            return {"model": s}
        return {"weights": s}

    first = edvr(clip, **source(stage1), **kwargs)
    second = edvr(first, **source(stage2), **kwargs)
    return second
