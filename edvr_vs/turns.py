"""Taking turns on the CPU, lowest frame number first.

On the CPU torch already spreads each operation over every core, so the engine lets one
request compute at a time. A plain lock is not fair: the thread that just released it often
takes it again with its next frame while another thread's earlier frame waits, for many
frames in a row on a busy machine. The outputs then run ahead of the frames the frame cache
keeps, and frames are computed twice. ``LowestFirst`` hands the turn to the waiting request
with the lowest key (the output frame number; ties in arrival order), so a sequential read
stays sequential however the threads are scheduled.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
from collections.abc import Iterator


class LowestFirst:
    """A lock whose waiters get it in ascending order of ``key``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._waiting: list[tuple[int, int]] = []  # a heap of (key, arrival)
        self._arrivals = itertools.count()

    @contextlib.contextmanager
    def turn(self, key: int) -> Iterator[None]:
        with self._cond:
            entry = (key, next(self._arrivals))
            heapq.heappush(self._waiting, entry)
            while self._busy or self._waiting[0] != entry:
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
