"""The checks of the arguments ``edvr()`` and ``window_clips()`` share: each bad value raises
``Invalid`` naming the parameter, what was given and what is allowed (the callers turn it into
``vs.Error``)."""

from __future__ import annotations

import os

import torch
import vapoursynth as vs

from edvr_vs import zoo
from edvr_vs.checkpoint import CheckpointError, load_model
from edvr_vs.nn.edvr import EDVR
from edvr_vs.window import PADDING_MODES

core = vs.core


class Invalid(Exception):
    """A bad argument; becomes ``vs.Error("<function>: ...")``."""


def pair(value: object, name: str, *, allow_zero: bool) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
    if ok:
        ok = all((v >= 0 if allow_zero else v > 0) and v % 4 == 0 for v in value)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise Invalid(f"{name!r} must be two {kind} multiples of 4 (width, height), got {value!r}")
    return int(value[0]), int(value[1])


def device_of(device: object, device_index: object) -> torch.device:
    if not isinstance(device_index, int) or isinstance(device_index, bool) or device_index < 0:
        raise Invalid(f"'device_index' must be an int ≥ 0, got {device_index!r}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str) or not (device in ("cpu", "cuda") or
                                           (device.startswith("cuda:") and device[5:].isdigit())):
        raise Invalid(f"'device' must be 'cuda', 'cuda:N' or 'cpu', got {device!r}")
    if device == "cpu":
        return torch.device("cpu")
    index = int(device[5:]) if ":" in device else device_index
    if not torch.cuda.is_available():
        raise Invalid(f"'device' is {device!r} but CUDA is not available here (torch sees no GPU); use 'cpu'")
    count = torch.cuda.device_count()
    if index >= count:
        raise Invalid(f"CUDA device index {index} is out of range: {count} device(s) present")
    return torch.device("cuda", index)


def output_format(fmt: object, clip: vs.VideoNode) -> vs.VideoFormat:
    if fmt is None:
        return clip.format
    try:
        out = core.get_video_format(fmt)  # a preset, a format id or a VideoFormat
    except (vs.Error, TypeError, ValueError):
        raise Invalid(f"'format' must be a VapourSynth video format (e.g. vs.YUV420P10), got {fmt!r}") from None
    if out is None or out.id == 0:
        raise Invalid(f"'format' must be a VapourSynth video format (e.g. vs.YUV420P10), got {fmt!r}")
    if out.color_family not in (vs.RGB, vs.YUV):
        raise Invalid(f"'format' must be RGB or YUV, got {out.name}")
    return out


def check_clip(clip: object) -> vs.VideoNode:
    if not isinstance(clip, vs.VideoNode):
        raise Invalid(f"'clip' must be a video clip (vs.VideoNode), got {type(clip).__name__}")
    if clip.format is None or clip.format.id == 0:
        raise Invalid("'clip' has a variable format; convert it to one format first (e.g. resize.Bicubic(format=...))")
    if clip.width == 0 or clip.height == 0:
        raise Invalid("'clip' has a variable resolution; resize it to one size first")
    if clip.format.color_family not in (vs.RGB, vs.YUV):
        raise Invalid(f"'clip' must be RGB or YUV, got {clip.format.name} (GRAY has no colour for EDVR)")
    return clip


def resolve_weights(model: object, weights: object) -> tuple[EDVR, str | None]:
    """The network, and the zoo's padding mode for it (None for a plain checkpoint)."""
    if model is not None and weights is not None:
        raise Invalid("give either 'model' (a zoo name) or 'weights' (a checkpoint path), not both")
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise Invalid(f"'weights' must be a checkpoint path, got {type(weights).__name__}")
        path, padding = weights, None
    else:
        if model is None:
            model = zoo.default_model()
            if model is None:
                raise Invalid("no default model is shipped with this version; pass model= (a zoo name: "
                               f"{', '.join(zoo.names())}) or weights= (a checkpoint path)")
        if not isinstance(model, str) or model not in zoo.names():
            raise Invalid(f"'model' must be one of {', '.join(zoo.names())}, got {model!r}")
        try:
            path = zoo.weights_path(model)
        except zoo.ZooError as e:
            raise Invalid(f"'model': {e}") from None
        padding = zoo.entry(model).padding
    try:
        return load_model(path), padding
    except CheckpointError as e:
        raise Invalid(f"'weights': {e}") from None


def default_padding(net: EDVR) -> str:
    """Padding for a checkpoint outside the zoo: replicate with pre-deblur (BasicSR's deblur
    configurations), reflection_circle otherwise (its SR configurations)."""
    return "replicate" if net.config.with_predeblur else "reflection_circle"


def check_padding(padding: object) -> str | None:
    if padding is not None and padding not in PADDING_MODES:
        raise Invalid(f"'padding' must be one of {', '.join(PADDING_MODES)}, got {padding!r}")
    return padding


def check_scene_change(scene_change: object) -> bool:
    if not isinstance(scene_change, bool):
        raise Invalid(f"'scene_change' must be True or False, got {scene_change!r}")
    return scene_change
