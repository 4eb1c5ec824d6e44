"""Scene cuts for ``edvr-vs run``: found with VapourSynth's core filters, marked as frame props.

A cut before frame n is marked as ``_SceneChangePrev = 1`` on n and ``_SceneChangeNext = 1`` on
n−1, the props ``edvr()`` keeps its windows inside (``edvr_vs.window``). Detection compares each
frame's luma, downscaled to at most ``DETECT_WIDTH`` pixels wide, with the previous frame's:
``std.PlaneStats``' mean absolute difference (0…1 of the full range) above ``threshold`` is a cut.
Cuts already marked on the source (``vapoursynth-zscene`` reading Av1an or av-scenechange output,
an ``SCDetect`` upstream) stay cuts. Marking is lazy and per frame: frame n's props depend on
frames n−1, n and n+1 only, so any range of the marked clip equals that range of a whole run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import vapoursynth as vs

from edvr_vs.colour import default_matrix

core = vs.core

DEFAULT_THRESHOLD = 0.14
DETECT_WIDTH = 320
PREV, NEXT = "_SceneChangePrev", "_SceneChangeNext"


def _luma(clip: vs.VideoNode) -> vs.VideoNode:
    """The clip's luma as float, at most ``DETECT_WIDTH`` wide (even sizes; RGB through its matrix)."""
    scale = min(1.0, DETECT_WIDTH / clip.width)
    w, h = max(2, round(clip.width * scale / 2) * 2), max(2, round(clip.height * scale / 2) * 2)
    if clip.format.color_family == vs.RGB:
        return core.resize.Bilinear(clip, w, h, format=vs.GRAYS,
                                    matrix=default_matrix(clip.width, clip.height))
    return core.resize.Bilinear(core.std.ShufflePlanes(clip, 0, vs.GRAY), w, h, format=vs.GRAYS)


def frame_differences(clip: vs.VideoNode) -> tuple[vs.VideoNode, vs.VideoNode]:
    """Two clips whose frame n carries ``PlaneStatsDiff``: n against n−1, and n against n+1
    (0 at the clip's ends)."""
    luma = _luma(clip)
    if clip.num_frames == 1:
        same = core.std.PlaneStats(luma, luma)
        return same, same
    prev = luma[0] + luma[:-1]
    nxt = luma[1:] + luma[-1]
    return core.std.PlaneStats(luma, prev), core.std.PlaneStats(luma, nxt)


def check_threshold(threshold: float | None) -> None:
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise ValueError(f"the scene-cut threshold must be in (0, 1] (or none: only cuts already marked), "
                         f"got {threshold!r}")


def mark_cuts(clip: vs.VideoNode, threshold: float | None = DEFAULT_THRESHOLD) -> vs.VideoNode:
    """``clip`` with detected cuts added to its ``_SceneChange*`` props; ``None``: no detection, the
    props are left as they are."""
    check_threshold(threshold)
    if threshold is None:
        return clip
    before, after = frame_differences(clip)

    def mark(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        out = f[0].copy()
        if f[1].props["PlaneStatsDiff"] > threshold:
            out.props[PREV] = 1
        if f[2].props["PlaneStatsDiff"] > threshold:
            out.props[NEXT] = 1
        return out

    return core.std.ModifyFrame(clip, clips=[clip, before, after], selector=mark)


def iter_scene_starts(marked: vs.VideoNode, stop: Callable[[], bool] | None = None, start: int = 0,
                      end: int | None = None) -> Iterator[int]:
    """The frames (> 0) of ``marked`` that begin a scene, in order, as its props are read (this
    decodes every frame once); ends early once ``stop()`` is true. ``start``, ``end``: only the starts
    in ``[start, end)``, reading frames ``start − 1 … end − 1``: frame n's props depend on frames
    n−1 … n+1 only, so spans scanned apart find exactly the cuts of one scan."""
    end = marked.num_frames if end is None else end
    previous_next = start > 0 and bool(marked.get_frame(start - 1).props.get(NEXT, 0))
    for n, f in enumerate(marked[start:end].frames(close=True), start=start):
        if stop is not None and stop():
            return
        if n > 0 and (previous_next or f.props.get(PREV, 0)):
            yield n
        previous_next = bool(f.props.get(NEXT, 0))


def scene_starts(marked: vs.VideoNode) -> list[int]:
    """All of ``iter_scene_starts``."""
    return list(iter_scene_starts(marked))


def scenes(length: int, starts: Iterable[int]) -> list[tuple[int, int]]:
    """``[start, stop)`` of each scene of a ``length``-frame clip cut before each of ``starts``."""
    bounds = [0, *sorted(s for s in set(starts) if 0 < s < length), length]
    return list(zip(bounds, bounds[1:]))
