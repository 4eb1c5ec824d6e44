"""The fastest of several equivalent algorithms, timed once per fixed shape (cuDNN's ``benchmark`` idea,
for our own kernels).

The engine's shapes never change within a run, so the first call of a shape may afford to time
every candidate: ``choose`` runs each a few times on the device, keeps the fastest for that key for
the rest of the process and says so on stderr once. Candidates must compute the same function
(they differ only in rounding), so a choice changes no frame beyond that. While a CUDA graph is
being captured nothing can be timed: the kept choice runs, or the first candidate if there is none
yet (the graph cache warms each shape up eagerly before capturing, so there normally is one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from edvr_vs.os_support import say

T = TypeVar("T")
REPEATS = 3  # timed runs per candidate, after one warm-up run; the median counts

_CHOICES: dict[tuple, str] = {}
_TIMES: dict[tuple, dict[str, float]] = {}
_LOCK = threading.Lock()


def device_ms(fn: Callable[[], object]) -> float:
    """Milliseconds of one ``fn()`` on the current CUDA stream (events), or wall time off CUDA."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing()


def choose(key: tuple, candidates: dict[str, Callable[[], T]],
           timer: Callable[[Callable[[], object]], float] = device_ms) -> T:
    """Run the candidate kept for ``key`` and return its result; on the first call of ``key``, time each
    candidate (one warm-up, then the median of ``REPEATS`` runs by ``timer``) and keep the fastest."""
    name = _CHOICES.get(key)
    if name is None and not _capturing():
        with _LOCK:
            name = _CHOICES.get(key)
            if name is None:
                times = {}
                for n, fn in candidates.items():
                    fn()
                    times[n] = sorted(timer(fn) for _ in range(REPEATS))[REPEATS // 2]
                name = min(times, key=times.__getitem__)
                _CHOICES[key], _TIMES[key] = name, times
                listed = ", ".join(f"{n} {ms:.3g} ms" for n, ms in times.items())
                say(f"edvr: timed {key[0]} for {_describe(key[1:])}: {listed}; using {name}\n")
    return candidates[name if name is not None else next(iter(candidates))]()


def _describe(parts: tuple) -> str:
    return " ".join(str(p).replace(" ", "") for p in parts)


def choices() -> list[dict[str, object]]:
    """Every choice this process made: key, the times of each candidate (ms) and the one kept."""
    with _LOCK:
        return [{"key": _describe(k), "ms": dict(_TIMES[k]), "chosen": c} for k, c in _CHOICES.items()]
