"""The Ray workers of one distributed run: start them, hand out chunks, replace failed ones.

A chunk whose worker dies (process killed, node lost) or fails (a CUDA or decoding error) goes
back to the front of the queue and its worker is replaced by a fresh one of the same kind; a
chunk that failed more than ``retries`` times stops the run. A worker that cannot start is
reported and dropped.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from types import ModuleType

from edvr_vs.chunks import Chunk
from edvr_vs.cluster.manifest import WorkDir
from edvr_vs.cluster.session import ClusterError, Slot
from edvr_vs.cluster.worker import ChunkWorker, ProgressBoard
from edvr_vs.files import sha256_of
from edvr_vs.job import Job
from edvr_vs.os_support import say

READY_TIMEOUT_S = 900.0  # loading the model, and on a cluster a first weights download and CUDA's start


def _brief(error: BaseException) -> str:
    lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else type(error).__name__


class WorkerPool:
    """The workers of one run and the chunks they hold."""

    def __init__(self, ray: ModuleType, job: Job, slots: list[Slot], work: WorkDir, retries: int):
        self.ray, self.job, self.work, self.retries = ray, job, work, retries
        self.actor = ray.remote(ChunkWorker)
        self.board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
        self.slot_of: dict[object, Slot] = {}
        self.place: dict[object, dict[str, object]] = {}
        self.starting: dict[object, tuple[object, float]] = {}  # where() ref -> (worker, when spawned)
        self.running: dict[object, tuple[object, Chunk]] = {}  # encode() ref -> (worker, chunk)
        self.idle: list[object] = []
        self.attempts: dict[int, int] = {}
        self.retried = 0
        self.t0 = time.monotonic()
        self.ready_s: float | None = None
        devices = ", ".join(f"{n} {d}" for d, n in Counter(slot.device for slot in slots).items())
        say(f"edvr-vs: starting {len(slots)} worker{'s' if len(slots) != 1 else ''} ({devices}); each opens the "
            "source and loads the model\n")
        for slot in slots:
            self._spawn(slot)

    def _spawn(self, slot: Slot) -> None:
        w = self.actor.options(**slot.actor_options(), max_restarts=0, max_task_retries=0).remote(
            self.job, slot.device, slot.threads)
        self.slot_of[w] = slot
        self.starting[w.where.remote()] = (w, time.monotonic())

    def alive(self) -> int:
        return len(self.idle) + len(self.running)

    def _retire(self, w: object) -> None:
        self.slot_of.pop(w, None)
        try:
            self.ray.kill(w)
        except Exception:  # already gone
            pass

    def step(self, pending: deque[Chunk], timeout: float) -> list[tuple[Chunk, dict[str, object]]]:
        """Hand out chunks, wait up to ``timeout`` s, and return the chunks that finished."""
        while pending and self.idle:
            w, c = self.idle.pop(), pending.popleft()
            self.running[w.encode.remote(c, str(self.work.segment(c)), self.board)] = (w, c)
        if not self.running and not self.starting:
            raise ClusterError("no worker is left to compute the remaining chunks (see the messages above)")
        ready, _ = self.ray.wait([*self.starting, *self.running], num_returns=1, timeout=timeout)
        for ref, (w, since) in list(self.starting.items()):
            if ref not in ready and time.monotonic() - since > READY_TIMEOUT_S:
                del self.starting[ref]
                say(f"\nedvr-vs: a {self.slot_of[w].device} worker did not start within {READY_TIMEOUT_S:.0f} s "
                    f"(no node with a free {self.slot_of[w].device.upper()} left?)\n")
                self._retire(w)
        finished = []
        for ref in ready:
            if ref in self.starting:
                self._started(ref)
            else:
                w, c = self.running.pop(ref)
                result = self._result(ref, w, c)
                if result is None:
                    pending.appendleft(c)
                else:
                    self.idle.append(w)
                    finished.append((c, result))
        return finished

    def _started(self, ref: object) -> None:
        w, _ = self.starting.pop(ref)
        try:
            self.place[w] = self.ray.get(ref)
            self.idle.append(w)
            if self.ready_s is None:
                self.ready_s = time.monotonic() - self.t0
        except self.ray.exceptions.RayError as e:
            slot = self.slot_of.get(w)
            say(f"\nedvr-vs: a {slot.device if slot else ''} worker could not start: {_brief(e)}\n")
            self._retire(w)

    def _result(self, ref: object, w: object, c: Chunk) -> dict[str, object] | None:
        """The chunk's result, or None after a failure (the chunk is to be retried, on a new worker)."""
        self.board.forget.remote(c.index)
        try:
            result = self.ray.get(ref)
            if sha256_of(self.work.segment(c)) == result["sha256"]:
                return result
            problem = "its segment does not have the hash the worker reported"
        except self.ray.exceptions.RayError as e:
            problem = _brief(e)
        except OSError as e:
            problem = f"its segment cannot be read: {e}"
        n = self.attempts[c.index] = self.attempts.get(c.index, 0) + 1
        where = self.place.get(w, {})
        say(f"\nedvr-vs: chunk {c.index} (frames {c.start}-{c.stop - 1}) failed on {where.get('host', '?')} "
            f"{where.get('device', '')}: {problem}\n")
        self.work.discard_partial(c)
        slot = self.slot_of.get(w)
        self._retire(w)
        if n > self.retries:
            raise ClusterError(f"chunk {c.index} failed {n} times; finished chunks are kept in {self.work.path}: "
                               f"run the same command again to resume")
        self.retried += 1
        if slot is not None:
            self._spawn(slot)
        return None

    def progress(self) -> int:
        """Frames done so far in the running chunks."""
        try:
            return sum(self.ray.get(self.board.snapshot.remote(), timeout=5).values())
        except self.ray.exceptions.RayError:  # slow, or gone: progress is only shown
            return 0

    def stop(self) -> None:
        for w in list(self.slot_of):
            self._retire(w)
