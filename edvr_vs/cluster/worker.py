"""What runs inside a Ray worker process: one ``ChunkWorker`` per device, and the progress board.

A ``ChunkWorker`` opens the source and builds the job's graph once (the model loads once), then
encodes chunk after chunk: frames ``[start, stop)`` of the same output clip a single process
would make, into a segment file that appears only when complete. With no chunk to do, it scans a
span of the source for scene cuts.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import torch

from edvr_vs.chunks import Chunk
from edvr_vs.files import sha256_of
from edvr_vs.job import Job
from edvr_vs.media import encode
from edvr_vs.scenes import iter_scene_starts, mark_cuts
from edvr_vs.timestamps import FrameTimes
from edvr_vs.video_tags import VideoTags

REPORT_EVERY_S = 0.5


class ProgressBoard:
    """Frames done per running chunk, as the workers report them (a Ray actor)."""

    def __init__(self) -> None:
        self.done: dict[int, int] = {}

    def report(self, chunk: int, frames: int) -> None:
        self.done[chunk] = frames

    def forget(self, chunk: int) -> None:
        self.done.pop(chunk, None)

    def snapshot(self) -> dict[int, int]:
        return dict(self.done)


class ChunkWorker:
    """Holds the job's output clip on one device (a Ray actor) and encodes chunks of it."""

    def __init__(self, job: Job, device: str, threads: int | None) -> None:
        if threads:  # Ray sets OMP_NUM_THREADS to the actor's CPUs; the driver's count gives its frames
            torch.set_num_threads(threads)
        self.job = job
        self.clip, _ = job.source()
        self.tags = VideoTags.of(self.clip)
        self.out = job.restored(device, self.clip)
        import ray

        self.place = {"host": socket.gethostname(), "pid": os.getpid(),
                      "node": ray.get_runtime_context().get_node_id(),
                      "device": f"cuda:{torch.cuda.current_device()}" if device == "cuda" else "cpu",
                      "threads": torch.get_num_threads()}

    def scan(self, start: int, stop: int) -> list[int]:
        """The scene starts in source frames ``[start, stop)`` (``edvr_vs.cluster.planning``'s spans)."""
        return list(iter_scene_starts(mark_cuts(self.clip, self.job.scene_threshold), None, start, stop))

    def where(self) -> dict[str, object]:
        """Host, process id and device of this worker."""
        return self.place

    def encode(self, chunk: Chunk, segment: str, board: object, times: FrameTimes | None = None,
               first: int = 0) -> dict[str, object]:
        """Encode the chunk's output frames into ``segment``; returns its frame count, hash and timing. A
        variable-rate source's ``times`` (the output's frame 0 being the source's frame ``first``) give the
        segment's frames their times, from 0 at its first frame."""
        t0 = last = time.monotonic()

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= REPORT_EVERY_S or done == total:
                last = now
                board.report.remote(chunk.index, done)

        encode(self.out[chunk.start:chunk.stop], Path(segment), self.job.encoder, list(self.job.encoder_args),
               tags=self.tags, times=times, first=first + chunk.start, progress=progress)
        return {"frames": chunk.frames, "sha256": sha256_of(segment), "seconds": round(time.monotonic() - t0, 3),
                **self.place}
