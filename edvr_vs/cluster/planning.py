"""The chunk plan of a distributed run, made while the workers compute.

Finding the cuts decodes the whole source once (about 80 frames/s at 1080p and 480 at 640×272 on
this 2-core machine), which alone would cap a run with many fast GPUs at that rate. So the source is
cut into spans of ``SPAN_FRAMES`` (``ScanSpans``): a thread of the driver scans them from the front,
and workers on other nodes that have no chunk to compute take them from the back (``WorkerPool``). A span's cuts
are those one scan finds there (``edvr_vs.scenes.iter_scene_starts`` reads one frame before it), and
spans are planned in order: chunks are handed out as soon as no later scene can change them
(``ChunkPlanner``), so the scan overlaps Ray's start, the model loads and the first chunks.
"""

from __future__ import annotations

import queue
import threading
import time

import vapoursynth as vs

from edvr_vs.chunks import Chunk, ChunkPlanner
from edvr_vs.scenes import iter_scene_starts, mark_cuts

SPAN_FRAMES = 1000  # about 12 s of one decode at 1080p here
_DONE = object()


class ScanSpans:
    """``[start, stop)`` spans of a ``length``-frame source, each scanned once, by the driver (in order
    from the front) or a worker (from the back); a span whose worker failed can be taken again."""

    def __init__(self, length: int, span: int = SPAN_FRAMES):
        self.bounds = [(a, min(a + span, length)) for a in range(0, length, span)]
        self.free = list(range(len(self.bounds)))  # not taken, in order
        self.results: dict[int, list[int]] = {}
        self.by_workers = 0  # spans whose cuts a worker found
        self._cond = threading.Condition()

    def take(self, index: int | None = None) -> int | None:
        """Claim span ``index`` (the driver, in order) or, with None, the last free one (a worker)."""
        with self._cond:
            if index is None:
                return self.free.pop() if self.free else None
            if index in self.free:
                self.free.remove(index)
                return index
            return None

    def give_back(self, index: int) -> None:
        """A worker failed on span ``index``: it is free again."""
        with self._cond:
            self.free.append(index)
            self.free.sort()
            self._cond.notify_all()

    def done(self, index: int, starts: list[int], by_worker: bool) -> None:
        with self._cond:
            self.results[index] = [int(s) for s in starts]
            self.by_workers += by_worker
            self._cond.notify_all()

    def wait(self, index: int, timeout: float) -> list[int] | None:
        """Span ``index``'s cuts once found (None after ``timeout`` s)."""
        with self._cond:
            self._cond.wait_for(lambda: index in self.results, timeout=timeout)
            return self.results.get(index)


class PlanThread:
    """Scene starts → chunks, in order; ``known_starts`` (from a complete earlier plan) skips the scan."""

    def __init__(self, clip: vs.VideoNode, threshold: float | None, radius: int, min_chunk: int, max_chunk: int,
                 known_starts: list[int] | None = None, span: int = SPAN_FRAMES):
        self.planner = ChunkPlanner(clip.num_frames, radius, min_chunk, max_chunk)
        self.clip, self.threshold, self.known = clip, threshold, known_starts
        self.spans = ScanSpans(clip.num_frames, span) if known_starts is None else None
        self.starts: list[int] = []
        self.seconds = 0.0
        self.complete = False
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edvr-vs plan", daemon=True)
        self._thread.start()

    def _found(self):  # -> Iterator[int]
        """The scene starts in order: the known ones, or span after span, scanned here unless a worker
        has taken the span (then its result is awaited; a failed worker's span is scanned here)."""
        if self.spans is None:
            yield from self.known
            return
        marked = mark_cuts(self.clip, self.threshold)
        for i, (a, b) in enumerate(self.spans.bounds):
            while (starts := self.spans.results.get(i)) is None:
                if self._stop.is_set():
                    return
                if self.spans.take(i) is not None:
                    found = list(iter_scene_starts(marked, self._stop.is_set, a, b))
                    if self._stop.is_set():
                        return
                    self.spans.done(i, found, by_worker=False)
                else:  # a worker has it
                    self.spans.wait(i, timeout=0.05)
            yield from starts

    def _run(self) -> None:
        t0 = time.monotonic()
        previous = 0
        try:
            for start in self._found():
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
