"""The frame cache: a bounded, thread-safe cache of per-frame work, keyed by (tile, frame index).

Each value is computed at most once while it stays cached, even when several
threads ask for it at the same moment: the first computes, the others wait for
it. A computation that raises leaves nothing behind (the next request computes
again), so an error such as CUDA running out of memory never poisons the cache.
The least recently needed entry is evicted when the cache is full.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0  # served from the cache (or from another thread's computation)
    misses: int = 0  # not cached when asked
    computes: int = 0  # computations finished and stored


class FrameCache(Generic[V]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"FrameCache: capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self.stats = CacheStats()
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._pending: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def set_capacity(self, capacity: int) -> None:
        """Change the bound, evicting the least recently needed entries down to it."""
        if capacity < 1:
            raise ValueError(f"FrameCache: capacity must be ≥ 1, got {capacity}")
        with self._lock:
            self.capacity = capacity
            self._evict()

    def _evict(self) -> None:
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value for ``key``, computing it with ``compute()`` if absent."""
        counted = False
        while True:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    if not counted:
                        self.stats.hits += 1
                    return self._entries[key]
                event = self._pending.get(key)
                if event is None:
                    event = self._pending[key] = threading.Event()
                    if not counted:
                        self.stats.misses += 1
                    break
                if not counted:
                    self.stats.hits += 1
                    counted = True
            event.wait()  # another thread computes it; look again (it may have failed)
        try:
            value = compute()
        except BaseException:
            with self._lock:
                del self._pending[key]
            event.set()
            raise
        with self._lock:
            self._entries[key] = value
            self.stats.computes += 1
            self._evict()
            del self._pending[key]
        event.set()
        return value
