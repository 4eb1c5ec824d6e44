"""The chunk plan of a distributed run, made in a background thread while the workers compute.

Finding the cuts decodes the whole source once (about 80 frames/s at 1080p and 480 at 640×272 on
this 2-core machine); chunks are handed out as soon as no later scene can change them
(``ChunkPlanner``), so the scan overlaps Ray's start, the model loads and the first chunks.
"""

from __future__ import annotations

import queue
import threading
import time

import vapoursynth as vs

from edvr_vs.chunks import Chunk, ChunkPlanner
from edvr_vs.scenes import iter_scene_starts, mark_cuts

_DONE = object()


class PlanThread:
    """Scene starts → chunks, in order; ``known_starts`` (from a complete earlier plan) skips the scan."""

    def __init__(self, clip: vs.VideoNode, threshold: float | None, radius: int, min_chunk: int, max_chunk: int,
                 known_starts: list[int] | None = None):
        self.planner = ChunkPlanner(clip.num_frames, radius, min_chunk, max_chunk)
        self.clip, self.threshold, self.known = clip, threshold, known_starts
        self.starts: list[int] = []
        self.seconds = 0.0
        self.complete = False
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edvr-vs plan", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        found = iter(self.known) if self.known is not None else \
            iter_scene_starts(mark_cuts(self.clip, self.threshold), stop=self._stop.is_set)
        previous = 0
        try:
            for start in found:
                self.starts.append(start)
                for c in self.planner.add_scene(previous, start):
                    self._queue.put(c)
                previous = start
            if self._stop.is_set():  # closed before the scan ended: the plan is not complete
                return
            for c in self.planner.add_scene(previous, self.clip.num_frames) + self.planner.finish():
                self._queue.put(c)
            self.seconds = time.monotonic() - t0
            self._queue.put(_DONE)
        except BaseException as e:  # handed to the driver's thread, which raises it
            self._queue.put(e)

    def take(self) -> list[Chunk]:
        """The chunks planned since the last call; raises what stopped the scan."""
        out = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out
            if item is _DONE:
                self.complete = True
            elif isinstance(item, BaseException):
                raise item
            else:
                out.append(item)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
