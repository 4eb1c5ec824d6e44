"""``edvr-vs run --workers/--cluster``: plan chunks, run them on Ray workers, join the segments.

The driver finds the scene cuts (``edvr_vs.scenes``), plans chunks (``edvr_vs.chunks``), keeps a
work folder (``edvr_vs.cluster.manifest``), hands chunks to one ``ChunkWorker`` per device, retries
a chunk whose worker failed or died on a fresh worker, and concatenates the segments with the
source's audio (``edvr_vs.media.concat``) into the output, which appears only when complete.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from edvr_vs.chunks import MAX_CHUNK, MIN_CHUNK, Chunk, check_sizes, plan_chunks
from edvr_vs.cluster import session
from edvr_vs.cluster.manifest import WorkDir, source_identity
from edvr_vs.cluster.session import ClusterError, Slot
from edvr_vs.cluster.worker import ChunkWorker, ProgressBoard
from edvr_vs.files import sha256_of
from edvr_vs.job import Job
from edvr_vs.media import concat, fmt_time
from edvr_vs.scenes import mark_cuts, scene_starts

RETRIES = 3
READY_TIMEOUT_S = 900.0  # model load, and on a cluster a first weights download and CUDA start


@dataclass
class Report:
    """What a distributed run did; times in seconds."""

    chunks: int
    frames: int
    context_frames: int
    reused: int = 0
    computed: int = 0
    retried: int = 0
    plan_s: float = 0.0
    start_s: float = 0.0  # Ray started and the first worker ready (model loaded)
    compute_s: float = 0.0  # from starting Ray to the last chunk done
    concat_s: float = 0.0
    workers: list[dict[str, object]] = field(default_factory=list)


def _say(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _brief(error: BaseException) -> str:
    lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else type(error).__name__


class _Pool:
    """The workers of one run and the chunks they hold."""

    def __init__(self, ray: ModuleType, job: Job, slots: list[Slot], work: WorkDir, retries: int):
        self.ray, self.job, self.work, self.retries = ray, job, work, retries
        self.actor = ray.remote(ChunkWorker)
        self.board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
        self.slot_of: dict[object, Slot] = {}
        self.place: dict[object, dict[str, object]] = {}
        self.starting: dict[object, object] = {}  # where() ref -> worker
        self.running: dict[object, tuple[object, Chunk]] = {}  # encode() ref -> (worker, chunk)
        self.idle: list[object] = []
        self.attempts: dict[int, int] = {}
        self.retried = 0
        self.t0 = time.monotonic()
        self.ready_s: float | None = None
        for slot in slots:
            self._spawn(slot)

    def _spawn(self, slot: Slot) -> None:
        w = self.actor.options(**slot.actor_options(), max_restarts=0, max_task_retries=0).remote(
            self.job, slot.device, slot.threads)
        self.slot_of[w] = slot
        self.starting[w.where.remote()] = w

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
        w = self.starting.pop(ref)
        try:
            self.place[w] = self.ray.get(ref)
            self.idle.append(w)
            if self.ready_s is None:
                self.ready_s = time.monotonic() - self.t0
        except self.ray.exceptions.RayError as e:
            slot = self.slot_of.get(w)
            _say(f"\nedvr-vs: a {slot.device if slot else ''} worker could not start: {_brief(e)}\n")
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
        _say(f"\nedvr-vs: chunk {c.index} (frames {c.start}-{c.stop - 1}) failed on {where.get('host', '?')} "
             f"{where.get('device', '')}: {problem}\n")
        for p in self.work.path.glob(f".{self.work.segment(c).stem}.partial-*"):
            p.unlink(missing_ok=True)
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
        except self.ray.exceptions.GetTimeoutError:
            return 0

    def stop(self) -> None:
        for w in list(self.slot_of):
            self._retire(w)


def _plan(job: Job, work: WorkDir, min_chunk: int, max_chunk: int) -> tuple[list[Chunk], set[int]]:
    clip, _ = job.source()
    source = source_identity(job.input, clip)
    settings = {**job.settings(), "min_chunk": min_chunk, "max_chunk": max_chunk}
    earlier = work.load()
    if earlier is not None:
        work.check(earlier, source, settings)
        starts = earlier["scene_starts"]
    else:
        _say("edvr-vs: finding scene cuts ...\n")
        starts = scene_starts(mark_cuts(clip, job.scene_threshold))
    chunks = plan_chunks(clip.num_frames, starts, job.radius(), min_chunk, max_chunk)
    return chunks, work.start(source, settings, starts, chunks, earlier)


def _compute(pool: _Pool, todo: list[Chunk], work: WorkDir, total: int, done_frames: int,
             report: Report) -> None:
    pending = deque(todo)
    t0 = time.monotonic()
    computed = 0
    while pending or pool.running:
        for c, result in pool.step(pending, timeout=0.5):
            work.record(c, result)
            computed += c.frames
            report.computed += 1
        now = computed + pool.progress()
        elapsed = time.monotonic() - t0
        fps = now / elapsed if elapsed > 0 else 0.0
        eta = (total - done_frames - now) / fps if fps > 0 else 0.0
        _say(f"\redvr-vs: {done_frames + now}/{total} frames, {fps:.2f} fps, ETA {fmt_time(eta)}, "
             f"workers {pool.alive()}, chunks {len(work.manifest['done'])}/{report.chunks}, "
             f"{pool.retried} retried ")
    _say("\n")
    report.workers = list(pool.place.values())


def run_distributed(job: Job, output: Path, *, workers: int | None = None, cluster: str | None = None,
                    device: str | None = None, min_chunk: int = MIN_CHUNK, max_chunk: int = MAX_CHUNK,
                    work_dir: Path | None = None, retries: int = RETRIES) -> Report:
    """Compute ``job`` on Ray workers into ``output``; see the module docstring. A run that fails or is
    interrupted keeps the finished segments for the next run (and removes the folder when there are none)."""
    session.require_ray()
    session.check_request(workers, device)
    try:
        check_sizes(min_chunk, max_chunk)
    except ValueError as e:
        raise ClusterError(str(e)) from None
    job = job.absolute()
    output = Path(output)
    work = WorkDir(Path(work_dir) if work_dir else output.with_name(output.name + ".parts"))
    t0 = time.monotonic()
    fresh = not work.path.exists()
    try:
        chunks, done = _plan(job, work, min_chunk, max_chunk)
        report = Report(chunks=len(chunks), frames=sum(c.frames for c in chunks),
                        context_frames=sum(c.context for c in chunks), reused=len(done),
                        plan_s=time.monotonic() - t0)
        _say(f"edvr-vs: {report.frames} frames in {len(chunks)} chunks, {len(done)} already done in {work.path}\n")
        todo = [c for c in chunks if c.index not in done]
        if todo:
            t1 = time.monotonic()
            report.retried = _run_pool(job, todo, work, report, workers, cluster, device, retries,
                                       sum(c.frames for c in chunks if c.index in done))
            report.compute_s = time.monotonic() - t1
    except BaseException:
        if fresh and not work.manifest.get("done"):
            shutil.rmtree(work.path, ignore_errors=True)
        raise
    t2 = time.monotonic()
    fps = job.source()[0].fps
    concat([work.segment(c) for c in chunks], output, [c.frames / fps for c in chunks], job.audio_from())
    report.concat_s = time.monotonic() - t2
    shutil.rmtree(work.path, ignore_errors=True)
    return report


def _run_pool(job: Job, todo: list[Chunk], work: WorkDir, report: Report, workers: int | None,
              cluster: str | None, device: str | None, retries: int, done_frames: int) -> int:
    """Run the chunks ``todo`` on a pool of workers; returns how many attempts were retried."""
    t0 = time.monotonic()
    ray = session.start(cluster, workers)
    try:
        pool = _Pool(ray, job, session.slots(ray, workers, device), work, retries)
        try:
            _compute(pool, todo, work, report.frames, done_frames, report)
        finally:
            pool.stop()
        report.start_s = pool.t0 - t0 + (pool.ready_s or 0.0)
        return pool.retried
    finally:
        ray.shutdown()
