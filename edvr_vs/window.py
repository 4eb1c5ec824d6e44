"""Which source frames output frame n needs: clip-edge padding and scene cuts.

Clip edges follow BasicSR's ``generate_frame_indices``; for frame 0 with radius 2 in
a 5-frame clip: replicate [0,0,0,1,2], reflection [2,1,0,1,2], reflection_circle
[4,3,0,1,2], circle [3,4,0,1,2]. Where a mode names a frame outside the range
(a clip or scene shorter than the window), the nearest frame inside is used
(``replicate``).

Scene cuts (``scene_window``): frames across a cut are replaced by applying the
same rule to the output frame's own scene. A cut between frames a and a+1 is
marked by ``_SceneChangeNext`` on a or ``_SceneChangePrev`` on a+1.

``splice_windows`` turns the clip-edge rule into 2N+1 clips, one per window position, and
``output_window`` applies the scene rule to the frames they deliver (``edvr()`` and
``window_clips()`` both take their windows from these two).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import vapoursynth as vs

core = vs.core

PADDING_MODES = ("replicate", "reflection", "reflection_circle", "circle")


def edge_index(i: int, center: int, radius: int, first: int, last: int, mode: str) -> int:
    """Source index for window position ``i`` (absolute) of output ``center`` in ``[first, last]``."""
    if first <= i <= last:
        return i
    length = last - first + 1
    if i < first:
        if mode == "replicate":
            j = first
        elif mode == "reflection":
            j = 2 * first - i
        elif mode == "reflection_circle":
            j = center + radius - (i - first)
        else:  # circle
            j = i + length
    else:
        if mode == "replicate":
            j = last
        elif mode == "reflection":
            j = 2 * last - i
        elif mode == "reflection_circle":
            j = center - radius - (i - last)
        else:
            j = i - length
    return min(max(j, first), last)


def window_indices(center: int, radius: int, first: int, last: int, mode: str) -> list[int]:
    """The 2·radius+1 source indices of output ``center`` within ``[first, last]``."""
    if mode not in PADDING_MODES:
        raise ValueError(f"padding must be one of {', '.join(PADDING_MODES)}, got {mode!r}")
    return [edge_index(i, center, radius, first, last, mode) for i in range(center - radius, center + radius + 1)]


def scene_bounds(center: int, length: int, available: set[int],
                 cut_after: Callable[[int], bool]) -> tuple[int | None, int | None]:
    """The centre's scene as far as the delivered frames show it.

    Walks outwards from ``center`` over consecutive indices in ``available``;
    ``cut_after(a)`` tells whether a cut separates a and a+1. Returns (start, end)
    where a cut was seen, None on a side where none was (clip edge or not known).
    """
    start = end = None
    a = center
    while a > 0:
        if cut_after(a - 1):
            start = a
            break
        if a - 1 not in available:
            break
        a -= 1
    a = center
    while a < length - 1:
        if cut_after(a):
            end = a
            break
        if a + 1 not in available:
            break
        a += 1
    return start, end


def scene_window(center: int, radius: int, length: int, mode: str, delivered: list[int],
                 props: Mapping[int, Mapping[str, object]]) -> list[int]:
    """Source indices after scene cuts are applied to the clip-edge window ``delivered``.

    ``props[i]`` are the frame props of delivered frame ``i``. Inside the centre's
    scene the padding mode applies; where it names a frame that was not delivered,
    or lies outside the scene, the nearest delivered frame of the scene is used.
    """
    available = set(delivered)

    def cut_after(a: int) -> bool:
        return bool(props.get(a, {}).get("_SceneChangeNext", 0)) or bool(props.get(a + 1, {}).get("_SceneChangePrev", 0))

    start, end = scene_bounds(center, length, available, cut_after)
    if start is None and end is None:
        return list(delivered)
    first = 0 if start is None else start
    last = length - 1 if end is None else end
    in_scene = sorted(i for i in available if first <= i <= last)
    wanted = window_indices(center, radius, first, last, mode)
    return [i if i in available else min(in_scene, key=lambda j: (abs(j - i), j)) for i in wanted]


def splice_windows(clip: vs.VideoNode, radius: int, padding: str) -> list[vs.VideoNode]:
    """The 2·radius+1 clips of the clip-edge windows: frame n of clip j is source frame
    ``window_indices(n, radius, 0, len - 1, padding)[j]``. Built by splicing trims of ``clip``, so
    VapourSynth delivers a window's frames to a callback in parallel and keeps its own cache."""
    length = clip.num_frames
    clips = []
    for j in range(2 * radius + 1):
        def pick(n: int) -> int:
            return window_indices(n, radius, 0, length - 1, padding)[j]

        head = range(0, min(radius, length))
        tail = range(max(length - radius, radius), length)
        pieces = [clip[pick(n)] for n in head]
        if length - radius > radius:
            pieces.append(clip[j:length - 2 * radius + j])
        pieces += [clip[pick(n)] for n in tail]
        clips.append(core.std.Splice(pieces) if len(pieces) > 1 else pieces[0])
    return clips


def output_window(n: int, radius: int, length: int, padding: str, frames: Sequence[vs.VideoFrame], *,
                  scene_change: bool) -> tuple[list[int], dict[int, vs.VideoFrame]]:
    """Output ``n``'s window from ``frames``, frame n of each of ``splice_windows``' clips: its source
    indices (clip edges; then, with ``scene_change``, scene cuts from the frames' props) and the
    delivered frames by source index (every index of the window is among them)."""
    delivered = window_indices(n, radius, 0, length - 1, padding)
    by_index = dict(zip(delivered, frames))
    if not scene_change:
        return delivered, by_index
    return scene_window(n, radius, length, padding, delivered, {i: f.props for i, f in by_index.items()}), by_index
