"""The Ray workers of one distributed run: start them, hand out chunks, replace failed ones, and
never wait forever.

A chunk whose worker dies (process killed, node lost), fails (a CUDA or decoding error) or stalls
(alive, but no new frame for the stall limit: a hung network mount, a stuck decoder) goes back to the
front of the queue and its worker is replaced by a fresh one of the same kind, placed wherever Ray
finds room (on a cluster, the nodes that are left); a chunk that failed more than ``retries`` times
stops the run. A worker that cannot start is reported and dropped. A run left without any live worker
for ``lost_timeout`` seconds stops, naming what was lost. On a cluster sized by its nodes (no
``--workers``), a node that joins mid-run gets workers of its own.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, deque
from types import ModuleType

from edvr_vs.chunks import Chunk
from edvr_vs.cluster.manifest import WorkDir
from edvr_vs.cluster.planning import ScanSpans
from edvr_vs.cluster.session import ClusterError, Slot, slots_for_node
from edvr_vs.cluster.worker import ChunkWorker, ProgressBoard
from edvr_vs.files import sha256_of
from edvr_vs.job import Job
from edvr_vs.os_support import say
from edvr_vs.timestamps import FrameTimes

READY_TIMEOUT_S = 900.0  # loading the model, and on a cluster a first weights download and CUDA's start
LOST_TIMEOUT_S = 120.0  # how long a run may have no live worker before it stops
STALL_FRAMES = 20  # a chunk stalls after this many median frame times without a new frame ...
STALL_MIN_S = 300.0  # ... or this long, whichever is longer
NODES_EVERY_S = 2.0  # how often the cluster's nodes are looked at


def _brief(error: BaseException) -> str:
    lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else type(error).__name__


class WorkerPool:
    """The workers of one run and the chunks they hold."""

    def __init__(self, ray: ModuleType, job: Job, slots: list[Slot], work: WorkDir, retries: int, *,
                 lost_timeout: float = LOST_TIMEOUT_S, stall_timeout: float | None = None,
                 grow_device: str | None | bool = False, times: FrameTimes | None = None, first: int = 0,
                 spans: ScanSpans | None = None):
        """``stall_timeout`` None: ``max(STALL_FRAMES`` × the median frame time, ``STALL_MIN_S)``;
        ``grow_device``: False, or the run's ``--device`` (None: any) when joining nodes get workers;
        ``times``, ``first``: a variable-rate source's frame times and the output's first source frame;
        ``spans``: the scan's spans, which idle workers take when no chunk is waiting, if they run on
        another node than the driver (on the driver's own machine a second decode only competes with its
        scan for the same cores: measured 1125 → 680 frames/s on 2 cores, ``scripts/bench_cluster.py``)."""
        self.times, self.first, self.spans = times, first, spans
        self.scanning: dict[object, tuple[object, int]] = {}  # scan() ref -> (worker, span)
        self.driver_node = ray.get_runtime_context().get_node_id()
        self.ray, self.job, self.work, self.retries = ray, job, work, retries
        self.lost_timeout, self.stall_timeout, self.grow_device = lost_timeout, stall_timeout, grow_device
        self.actor = ray.remote(ChunkWorker)
        self.board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
        self.slot_of: dict[object, Slot] = {}
        self.place: dict[object, dict[str, object]] = {}
        self.starting: dict[object, tuple[object, float]] = {}  # where() ref -> (worker, when spawned)
        self.running: dict[object, tuple[object, Chunk]] = {}  # encode() ref -> (worker, chunk)
        self.idle: list[object] = []
        self.attempts: dict[int, int] = {}
        self.retried = 0
        self.workers_lost = 0
        self.t0 = time.monotonic()
        self.ready_s: float | None = None
        self.frames_now: dict[int, int] = {}  # chunk -> frames done, as last reported
        self.moved: dict[int, float] = {}  # chunk -> when it was handed out or last reported a new frame
        self.frame_times: list[float] = []  # seconds per frame of each finished chunk
        self.nodes: dict[str, str] = {}  # alive node id -> host name
        self.nodes_lost: dict[str, str] = {}
        self.nodes_checked = 0.0
        self.no_worker_since: float | None = None
        self._check_nodes(initial=True)
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
        return len(self.idle) + len(self.running) + len(self.scanning)

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
            self.running[w.encode.remote(c, str(self.work.segment(c)), self.board, self.times, self.first)] = (w, c)
            self.moved[c.index] = time.monotonic()
        elsewhere = [w for w in self.idle if self.place.get(w, {}).get("node") != self.driver_node]
        while self.spans is not None and not pending and elsewhere and (i := self.spans.take()) is not None:
            w = elsewhere.pop()
            self.idle.remove(w)
            self.scanning[w.scan.remote(*self.spans.bounds[i])] = (w, i)
        if not self.alive() and not self.starting:
            raise ClusterError(f"no worker is left to compute the remaining chunks ({self.losses()}; see the "
                               f"messages above); finished chunks are kept in {self.work.path}: run the same "
                               f"command again to resume")
        refs = [*self.starting, *self.running, *self.scanning]
        if refs:
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        else:  # every worker idle, waiting for the plan
            ready = []
            time.sleep(min(timeout, 0.1))
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
            elif ref in self.scanning:
                self._scanned(ref)
            else:
                w, c = self.running.pop(ref)
                result = self._result(ref, w, c)
                if result is None:
                    pending.appendleft(c)
                else:
                    self.idle.append(w)
                    finished.append((c, result))
                    self.frame_times.append(result["seconds"] / max(c.frames, 1))
        self._check_progress(pending)
        self._check_nodes()
        self._check_alive()
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

    def _scanned(self, ref: object) -> None:
        w, i = self.scanning.pop(ref)
        try:
            self.spans.done(i, self.ray.get(ref), by_worker=True)
            self.idle.append(w)
        except self.ray.exceptions.RayError as e:
            a, b = self.spans.bounds[i]
            say(f"\nedvr-vs: scanning frames {a}-{b - 1} failed on {self.place.get(w, {}).get('host', '?')}: "
                f"{_brief(e)}\n")
            self.spans.give_back(i)
            self._replace(w)

    def _result(self, ref: object, w: object, c: Chunk) -> dict[str, object] | None:
        """The chunk's result, or None after a failure (the chunk is to be retried, on a new worker)."""
        try:
            result = self.ray.get(ref)
            if sha256_of(self.work.segment(c)) == result["sha256"]:
                self._forget(c)
                return result
            problem = "its segment does not have the hash the worker reported"
        except self.ray.exceptions.RayError as e:
            problem = _brief(e)
        except OSError as e:
            problem = f"its segment cannot be read: {e}"
        self._failed(w, c, problem)
        return None

    def _failed(self, w: object, c: Chunk, problem: str) -> None:
        """Retire ``c``'s worker (replaced by a fresh one of its kind) and count the attempt; ClusterError
        once ``c`` failed more than ``retries`` times."""
        self._forget(c)
        n = self.attempts[c.index] = self.attempts.get(c.index, 0) + 1
        where = self.place.get(w, {})
        say(f"\nedvr-vs: chunk {c.index} (frames {c.start}-{c.stop - 1}) failed on {where.get('host', '?')} "
            f"{where.get('device', '')}: {problem}\n")
        self.work.discard_partial(c)
        if n > self.retries:
            self._retire(w)
            raise ClusterError(f"chunk {c.index} failed {n} times; finished chunks are kept in {self.work.path}: "
                               f"run the same command again to resume")
        self.retried += 1
        self._replace(w)

    def _replace(self, w: object) -> None:
        """Retire a failed worker and start a fresh one of its kind, anywhere with room (its node may be gone)."""
        slot = self.slot_of.get(w)
        self._retire(w)
        self.workers_lost += 1
        if slot is not None:
            self._spawn(Slot(slot.device, slot.threads))

    def _forget(self, c: Chunk) -> None:
        self.frames_now.pop(c.index, None)
        self.moved.pop(c.index, None)
        try:
            self.board.forget.remote(c.index)
        except self.ray.exceptions.RayError:  # the board's node is gone: progress is only shown
            pass

    def stall_limit(self) -> float:
        """Seconds without a new frame after which a running chunk counts as stalled."""
        if self.stall_timeout is not None:
            return self.stall_timeout
        median = statistics.median(self.frame_times) if self.frame_times else 0.0
        return max(STALL_FRAMES * median, STALL_MIN_S)

    def _check_progress(self, pending: deque[Chunk]) -> None:
        """Read the workers' progress; a chunk with no new frame for ``stall_limit()`` is cancelled (its
        worker killed) and goes back to the queue."""
        try:
            snapshot = self.ray.get(self.board.snapshot.remote(), timeout=5)
        except self.ray.exceptions.RayError:  # slow, or gone: no judgement this time
            return
        now, limit = time.monotonic(), self.stall_limit()
        for ref, (w, c) in list(self.running.items()):
            frames = snapshot.get(c.index, 0)
            if frames != self.frames_now.get(c.index):
                self.frames_now[c.index] = frames
                if frames:
                    self.moved[c.index] = now
            elif now - self.moved.get(c.index, now) > limit:
                del self.running[ref]
                self._failed(w, c, f"no new frame for {limit:.0f} s after frame {frames} (stalled; "
                                   f"--stall-timeout sets the limit)")
                pending.appendleft(c)

    def _check_nodes(self, initial: bool = False) -> None:
        """Note nodes lost and joined (every ``NODES_EVERY_S``); a joining node gets workers when the run is
        sized by its cluster's nodes (``initial``: the nodes there at the start)."""
        now = time.monotonic()
        if not initial and now - self.nodes_checked < NODES_EVERY_S:
            return
        self.nodes_checked = now
        try:
            alive = {n["NodeID"]: n for n in self.ray.nodes() if n.get("Alive")}
        except Exception:  # noqa: BLE001 - the cluster's control service is gone: the alive check decides
            return
        for node, host in list(self.nodes.items()):
            if node not in alive:
                self.nodes_lost[node] = self.nodes.pop(node)
                say(f"\nedvr-vs: lost the Ray node {host} ({node[:12]}); its chunks go to the nodes that are left\n")
        joined = [n for node, n in alive.items() if node not in self.nodes]
        for n in joined:
            self.nodes[n["NodeID"]] = str(n.get("NodeManagerHostname", "?"))
            if self.grow_device is not False and not initial:
                new = slots_for_node(n, self.grow_device)
                say(f"\nedvr-vs: the Ray node {self.nodes[n['NodeID']]} joined; starting {len(new)} worker(s) on it\n")
                for slot in new:
                    self._spawn(slot)

    def _check_alive(self) -> None:
        """ClusterError once no worker has been alive for ``lost_timeout`` s (nodes lost, none to start on)."""
        if self.alive():
            self.no_worker_since = None
            return
        now = time.monotonic()
        self.no_worker_since = self.no_worker_since or now
        if now - self.no_worker_since > self.lost_timeout:
            raise ClusterError(f"no live worker for {self.lost_timeout:.0f} s ({self.losses()}); finished chunks "
                               f"are kept in {self.work.path}: run the same command again to resume "
                               f"(--lost-timeout sets how long to wait)")

    def losses(self) -> str:
        """What was lost so far, in words."""
        nodes = ", ".join(self.nodes_lost.values())
        return (f"{self.workers_lost} worker(s) lost"
                + (f"; {len(self.nodes_lost)} node(s) lost: {nodes}" if self.nodes_lost else ""))

    def progress(self) -> int:
        """Frames done so far in the running chunks, as last reported."""
        return sum(self.frames_now.get(c.index, 0) for _, c in self.running.values())

    def stop(self) -> None:
        for w in list(self.slot_of):
            self._retire(w)
