"""How a long clip is cut into chunks that workers compute apart.

Scenes longer than ``max_chunk`` frames are split into equal parts; consecutive pieces are merged
while a chunk is shorter than ``min_chunk`` (and stays within ``max_chunk``); a short last chunk
joins the one before. ``ChunkPlanner`` does this while the scenes are still being found. Because the windows
of ``edvr()`` stay inside their scene, a chunk that begins (ends) at a scene cut reads nothing
before (after) it; one that begins or ends inside a scene reads up to N frames beyond it, its
``context``: frames whose per-frame work (features) is done again by the neighbouring chunk.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from edvr_vs.scenes import scenes

# Defaults, in frames (24–30 fps video): a chunk of at least 5 s costs its encoder's start and a
# key frame at most once per 5 s; one of at most 50 s bounds the work lost to a failed worker and
# the idle tail of a job (about half a chunk per worker), and leaves a two-hour film ~170 chunks
# to balance over many GPUs. A split inside a scene costs at most 2N frames of features per 1200.
MIN_CHUNK = 120
MAX_CHUNK = 1200


@dataclass(frozen=True)
class Chunk:
    """Output frames ``[start, stop)``; ``context``: source frames outside it that its windows read."""

    index: int
    start: int
    stop: int
    context: int

    @property
    def frames(self) -> int:
        return self.stop - self.start


def chunk_sizes(min_chunk: int | None, max_chunk: int | None) -> tuple[int, int]:
    """``(min_chunk, max_chunk)`` with defaults that follow the one given: ``--max-chunk 25`` alone means a
    minimum of 25, ``--min-chunk 2000`` alone a maximum of 2000; only two given values that contradict
    each other are refused (ValueError)."""
    if min_chunk is None:
        min_chunk = min(MIN_CHUNK, max_chunk) if isinstance(max_chunk, int) and max_chunk >= 1 else MIN_CHUNK
    if max_chunk is None:
        max_chunk = max(MAX_CHUNK, min_chunk) if isinstance(min_chunk, int) else MAX_CHUNK
    check_sizes(min_chunk, max_chunk)
    return min_chunk, max_chunk


def check_sizes(min_chunk: int, max_chunk: int) -> None:
    for name, value in (("--min-chunk", min_chunk), ("--max-chunk", max_chunk)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive number of frames, got {value!r}")
    if min_chunk > max_chunk:
        raise ValueError(f"--min-chunk ({min_chunk}) must not exceed --max-chunk ({max_chunk})")


def _pieces(a: int, b: int, max_chunk: int) -> list[tuple[int, int]]:
    """Scene ``[a, b)`` in the fewest near-equal parts of at most ``max_chunk`` frames."""
    parts = -(-(b - a) // max_chunk)
    bounds = [a + (b - a) * i // parts for i in range(parts + 1)]
    return list(zip(bounds, bounds[1:]))


class ChunkPlanner:
    """Plans chunks while scenes arrive in order (``add_scene``), handing out each chunk as soon as
    no later scene can change it, so that workers start before the whole source has been scanned.
    ``plan_chunks`` is the same plan at once."""

    def __init__(self, length: int, radius: int, min_chunk: int = MIN_CHUNK, max_chunk: int = MAX_CHUNK):
        check_sizes(min_chunk, max_chunk)
        self.length, self.radius, self.min, self.max = length, radius, min_chunk, max_chunk
        self.groups: list[list[int]] = []  # [start, stop) not handed out yet
        self.scene_starts: list[int] = []
        self.scene_stops: list[int] = []
        self.count = 0

    def add_scene(self, a: int, b: int) -> list[Chunk]:
        """Scene ``[a, b)`` (the next one); returns the chunks that became final."""
        self.scene_starts.append(a)
        self.scene_stops.append(b)
        for pa, pb in _pieces(a, b, self.max):
            last = self.groups[-1] if self.groups else None
            if last and last[1] - last[0] < self.min and pb - last[0] <= self.max:
                last[1] = pb
            else:
                self.groups.append([pa, pb])
        # the last group may still grow, or at the end be merged into the one before it
        keep = 1 if self.groups[-1][1] - self.groups[-1][0] >= self.min else 2
        return self._hand_out(len(self.groups) - keep)

    def finish(self) -> list[Chunk]:
        """The remaining chunks, once the last scene was added; a short last chunk joins the one before."""
        g = self.groups
        if len(g) > 1 and g[-1][1] - g[-1][0] < self.min and g[-1][1] - g[-2][0] <= self.max:
            g[-2][1] = g[-1][1]
            g.pop()
        return self._hand_out(len(g))

    def _hand_out(self, n: int) -> list[Chunk]:
        out = []
        for a, b in self.groups[:max(0, n)]:
            first = self.scene_starts[bisect.bisect_right(self.scene_starts, a) - 1]
            stop = self.scene_stops[bisect.bisect_right(self.scene_starts, b - 1) - 1]
            out.append(Chunk(self.count, a, b, min(self.radius, a - first) + min(self.radius, stop - b)))
            self.count += 1
        del self.groups[:max(0, n)]
        return out


def plan_chunks(length: int, starts: Sequence[int], radius: int, min_chunk: int = MIN_CHUNK,
                max_chunk: int = MAX_CHUNK) -> list[Chunk]:
    """Chunks covering frames ``[0, length)`` of a clip whose scenes begin at ``starts``, for a
    model that reads ``radius`` frames on each side."""
    planner = ChunkPlanner(length, radius, min_chunk, max_chunk)
    chunks = []
    for a, b in scenes(length, starts):
        chunks += planner.add_scene(a, b)
    return chunks + planner.finish()
