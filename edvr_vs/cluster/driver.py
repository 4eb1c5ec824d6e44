"""``edvr-vs run --workers/--cluster``: plan chunks, run them on Ray workers, join the segments.

The driver scans the source for scene cuts and plans chunks in a background thread
(``edvr_vs.cluster.planning``), keeps a work folder (``edvr_vs.cluster.manifest``), hands each chunk
to one of the ``ChunkWorker`` actors as soon as it is planned (``edvr_vs.cluster.pool``), and
concatenates the segments with the source's other streams (``edvr_vs.media.concat``) into the output,
which appears only when complete.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch
import vapoursynth as vs

from edvr_vs.chunks import Chunk, chunk_sizes, plan_chunks
from edvr_vs.cluster import session
from edvr_vs.cluster.manifest import WorkDir, WorkDirError, source_identity
from edvr_vs.cluster.planning import PlanThread
from edvr_vs.cluster.pool import LOST_TIMEOUT_S, WorkerPool
from edvr_vs.cluster.session import ClusterError
from edvr_vs.job import Job
from edvr_vs.media import check_encoding, check_output, concat, fmt_time
from edvr_vs.os_support import say
from edvr_vs.timestamps import FrameTimes
from edvr_vs.video_tags import VideoTags

core = vs.core

RETRIES = 3


@dataclass
class Report:
    """What a distributed run did; times in seconds."""

    frames: int
    chunks: int = 0
    context_frames: int = 0
    reused: int = 0
    computed: int = 0
    retried: int = 0
    plan_s: float = 0.0  # scanning the source for cuts (overlaps the rest)
    scan_spans: int = 0  # spans the scan was split into (0: the cuts of an earlier run were reused)
    spans_by_workers: int = 0  # ... of which idle workers scanned
    start_s: float = 0.0  # Ray started and the first worker ready (model loaded)
    compute_s: float = 0.0  # from starting Ray to the last chunk done
    concat_s: float = 0.0
    workers: list[dict[str, object]] = field(default_factory=list)


@dataclass
class _Run:
    """The state of one run's main loop."""

    job: Job
    work: WorkDir
    report: Report
    done_before: dict[int, tuple[int, int]]
    chunks: list[Chunk] = field(default_factory=list)
    pending: deque[Chunk] = field(default_factory=deque)
    frames_done: int = 0

    def take_plan(self, plan: PlanThread) -> None:
        """Queue the chunks planned since the last call; note the plan in the manifest once complete."""
        was_complete = plan.complete
        for c in plan.take():
            self.chunks.append(c)
            self.work.add_chunk(c)
            if self.done_before.get(c.index) == (c.start, c.stop):
                self.report.reused += 1
                self.frames_done += c.frames
            else:
                self.pending.append(c)
        if plan.complete and not was_complete:
            self.work.finish_plan(plan.starts)
            say(f"\redvr-vs: plan complete: {len(plan.starts) + 1} scenes in {len(self.chunks)} chunks "
                f"(scene cuts found in {plan.seconds:.1f} s)\n")


def _compute(run: _Run, plan: PlanThread, pool: WorkerPool) -> None:
    t0 = time.monotonic()
    computed = 0
    while True:
        run.take_plan(plan)
        if plan.complete and not run.pending and not pool.running:
            break
        for c, result in pool.step(run.pending, timeout=0.5):  # idle workers scan while no chunk waits
            run.work.record(c, result)
            computed += c.frames
            run.report.computed += 1
        now = computed + pool.progress()
        elapsed = time.monotonic() - t0
        fps = now / elapsed if elapsed > 0 else 0.0
        eta = (run.report.frames - run.frames_done - now) / fps if fps > 0 else 0.0
        planned = f"{len(run.chunks)}{'' if plan.complete else '+'}"
        say(f"\redvr-vs: {run.frames_done + now}/{run.report.frames} frames, {fps:.2f} fps, ETA {fmt_time(eta)}, "
            f"workers {pool.alive()}, chunks {len(run.work.manifest['done'])}/{planned}, {pool.retried} retried"
            f"{', ' + pool.losses() if pool.workers_lost or pool.nodes_lost else ''} ")
    say("\n")


def _run_pool(run: _Run, plan: PlanThread, workers: int | None, cluster: str | None, device: str | None,
              retries: int, lost_timeout: float, stall_timeout: float | None, times: FrameTimes | None,
              first: int) -> None:
    t0 = time.monotonic()
    say(f"edvr-vs: joining the Ray cluster at {cluster}\n" if cluster else "edvr-vs: starting a local Ray instance\n")
    ray = session.start(cluster, workers)
    try:
        pool = WorkerPool(ray, run.job, session.slots(ray, workers, device), run.work, retries,
                          lost_timeout=lost_timeout, stall_timeout=stall_timeout,
                          grow_device=device if cluster is not None and workers is None else False,
                          times=times, first=first, spans=plan.spans)
        try:
            _compute(run, plan, pool)
        finally:
            pool.stop()
        run.report.start_s = pool.t0 - t0 + (pool.ready_s or 0.0)
        run.report.retried = pool.retried
        run.report.workers = list(pool.place.values())
    finally:
        ray.shutdown()
    run.report.compute_s = time.monotonic() - t0


def run_distributed(job: Job, output: Path, *, workers: int | None = None, cluster: str | None = None,
                    device: str | None = None, min_chunk: int | None = None, max_chunk: int | None = None,
                    work_dir: Path | None = None, retries: int = RETRIES, lost_timeout: float = LOST_TIMEOUT_S,
                    stall_timeout: float | None = None) -> Report:
    """Compute ``job`` on Ray workers into ``output``; see the module docstring and ``WorkerPool`` (what
    ``lost_timeout`` and ``stall_timeout`` bound). A run that fails or is interrupted keeps the finished
    segments for the next run (and removes the folder when there are none)."""
    for name, value in (("--lost-timeout", lost_timeout), ("--stall-timeout", stall_timeout)):
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise ClusterError(f"{name} must be a positive number of seconds, got {value!r}")
    session.require_ray()
    session.check_request(workers, device, cluster)
    try:
        min_chunk, max_chunk = chunk_sizes(min_chunk, max_chunk)
    except ValueError as e:
        raise ClusterError(str(e)) from None
    job = job.absolute()
    output = Path(output)
    check_output(output)
    work = WorkDir(Path(work_dir) if work_dir else output.with_name(output.name + ".parts"))
    clip, first = job.source()
    source = source_identity(job.input, clip)
    # CPU workers compute with the driver's thread count (edvr_vs.cluster.session.Slot)
    settings = {**job.settings(), "frames": [first, first + clip.num_frames], "min_chunk": min_chunk,
                "max_chunk": max_chunk, "device": device, "cpu_threads": torch.get_num_threads()}
    config = job.config()
    radius = config.radius
    check_encoding(core.std.BlankClip(clip, width=clip.width * config.scale, height=clip.height * config.scale),
                   output, job.encoder, list(job.encoder_args))
    times = job.frame_times()
    streams = job.passthrough(output, clip, first, times)
    for note in streams.notes if streams else ():
        say(f"edvr-vs: {note}\n")
    if times is not None:
        say(f"edvr-vs: variable frame rate: the output keeps the source's timestamps ({len(times.pts)} frames)\n")
    created = not work.path.exists()
    work.lock()
    try:
        earlier = work.load()
        if earlier is not None:
            work.check(earlier, source, settings)
    except WorkDirError:
        work.release(remove_folder=created)
        raise
    fresh = earlier is None  # the folder is new, or was empty: everything in it is this run's
    known = earlier["scene_starts"] if earlier is not None and earlier.get("plan_complete") else None
    run = _Run(job, work, Report(frames=clip.num_frames), {})
    try:
        run.done_before = work.start(source, settings, earlier)
        say(f"edvr-vs: {clip.num_frames} frames; {len(run.done_before)} chunks already done in {work.path}\n")
        say("edvr-vs: planning: reusing the scene cuts of the earlier run\n" if known is not None else
            f"edvr-vs: planning: looking for scene cuts in {clip.num_frames} frames, in the background; chunks "
            "start as soon as they are planned\n")
        plan = PlanThread(clip, job.scene_threshold, radius, min_chunk, max_chunk, known)
        try:
            everything_done = known is not None and all(
                run.done_before.get(c.index) == (c.start, c.stop)
                for c in plan_chunks(clip.num_frames, known, radius, min_chunk, max_chunk))
            if everything_done:
                while not plan.complete:
                    run.take_plan(plan)
                    time.sleep(0.01)
            else:
                _run_pool(run, plan, workers, cluster, device, retries, lost_timeout, stall_timeout, times, first)
        finally:
            plan.close()
        run.report.plan_s = plan.seconds
        if plan.spans is not None:
            run.report.scan_spans, run.report.spans_by_workers = len(plan.spans.bounds), plan.spans.by_workers
    except BaseException:
        if fresh and not work.manifest.get("done"):
            work.remove()
        raise
    rep = run.report
    rep.chunks, rep.context_frames = len(run.chunks), sum(c.context for c in run.chunks)
    t0 = time.monotonic()
    durations = [times.seconds(first + c.stop) - times.seconds(first + c.start) if times else c.frames / clip.fps
                 for c in run.chunks]
    concat([work.segment(c) for c in run.chunks], output, durations, VideoTags.of(clip), streams)
    rep.concat_s = time.monotonic() - t0
    work.remove()
    return rep
