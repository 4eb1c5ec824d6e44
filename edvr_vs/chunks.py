"""How a long clip is cut into chunks that workers compute apart.

Scenes longer than ``max_chunk`` frames are split into equal parts; consecutive pieces are merged
while a chunk is shorter than ``min_chunk`` (and stays within ``max_chunk``). Because the windows
of ``edvr()`` stay inside their scene, a chunk that begins (ends) at a scene cut reads nothing
before (after) it; one that begins or ends inside a scene reads up to N frames beyond it, its
``context``: frames whose per-frame work (features) is done again by the neighbouring chunk.
"""

from __future__ import annotations

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


def check_sizes(min_chunk: int, max_chunk: int) -> None:
    for name, value in (("--min-chunk", min_chunk), ("--max-chunk", max_chunk)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive number of frames, got {value!r}")
    if min_chunk > max_chunk:
        raise ValueError(f"--min-chunk ({min_chunk}) must not exceed --max-chunk ({max_chunk})")


def _pieces(length: int, starts: Sequence[int], max_chunk: int) -> list[tuple[int, int]]:
    """Scenes, each longer than ``max_chunk`` split into the fewest near-equal parts within it."""
    out = []
    for a, b in scenes(length, starts):
        parts = -(-(b - a) // max_chunk)
        bounds = [a + (b - a) * i // parts for i in range(parts + 1)]
        out += list(zip(bounds, bounds[1:]))
    return out


def plan_chunks(length: int, starts: Sequence[int], radius: int, min_chunk: int = MIN_CHUNK,
                max_chunk: int = MAX_CHUNK) -> list[Chunk]:
    """Chunks covering frames ``[0, length)`` of a clip whose scenes begin at ``starts``, for a
    model that reads ``radius`` frames on each side."""
    check_sizes(min_chunk, max_chunk)
    groups: list[list[int]] = []
    for a, b in _pieces(length, starts, max_chunk):
        last = groups[-1] if groups else None
        if last and last[1] - last[0] < min_chunk and b - last[0] <= max_chunk:
            last[1] = b
        else:
            groups.append([a, b])
    if len(groups) > 1 and groups[-1][1] - groups[-1][0] < min_chunk and \
            groups[-1][1] - groups[-2][0] <= max_chunk:
        groups[-2][1] = groups[-1][1]
        groups.pop()
    cut_set = {0, length, *starts}
    bounds = sorted(cut_set)

    def scene_of(frame: int) -> tuple[int, int]:
        first = max(s for s in bounds if s <= frame)
        return first, min(s for s in bounds if s > frame)

    chunks = []
    for i, (a, b) in enumerate(groups):
        before = min(radius, a - scene_of(a)[0])
        after = min(radius, scene_of(b - 1)[1] - b)
        chunks.append(Chunk(i, a, b, before + after))
    return chunks
