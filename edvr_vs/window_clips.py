"""``window_clips(clip)``: EDVR's windows as 2N+1 RGB clips, the input of an exported model in vs-mlrt.

Frame n of clip k is the k-th frame of output n's window, by ``edvr()``'s own rule
(``edvr_vs.window``: clip-edge padding, windows kept inside their scene, short clips), in
``edvr()``'s RGB (``edvr_vs.colour.to_rgbs``). So::

    core.ort.Model(edvr_vs.window_clips(clip), network_path="edvr.onnx")

(or ``core.trt.Model``, vs-mlrt's ``inference()``) with a model from ``edvr-vs export`` gives
``edvr(clip, format=vs.RGBS)``'s frames.
"""

from __future__ import annotations

import os

import vapoursynth as vs

from edvr_vs.arguments import Invalid, check_clip, check_padding, check_scene_change, default_padding, resolve_weights
from edvr_vs.colour import to_rgbs
from edvr_vs.window import output_window, splice_windows

core = vs.core


def window_clips(clip: vs.VideoNode, *, model: str | None = None, weights: str | os.PathLike[str] | None = None,
                 padding: str | None = None, scene_change: bool = True) -> list[vs.VideoNode]:
    """The 2N+1 RGBS clips of ``edvr(clip, model=..., weights=..., padding=..., scene_change=...)``'s
    windows, frames n−N … n+N of each window in that order; N from the model, arguments as ``edvr()``'s.

    Raises:
        vs.Error: ``"window_clips: ..."`` for any bad argument, naming it.
    """
    try:
        clip = check_clip(clip)
        padding = check_padding(padding)
        scene_change = check_scene_change(scene_change)
        net, zoo_padding = resolve_weights(model, weights)
    except Invalid as e:
        raise vs.Error(f"window_clips: {e}") from None
    padding = padding or zoo_padding or default_padding(net)
    radius, length = net.config.radius, clip.num_frames
    source = to_rgbs(clip, None)
    spliced = splice_windows(source, radius, padding)

    def position(k: int) -> vs.VideoNode:
        def pick(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
            window, by_index = output_window(n, radius, length, padding, f, scene_change=scene_change)
            return by_index[window[k]]

        return core.std.ModifyFrame(source, clips=spliced, selector=pick)

    return [position(k) for k in range(2 * radius + 1)]
