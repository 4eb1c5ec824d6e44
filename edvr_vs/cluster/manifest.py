"""The work folder of a distributed run: finished segments and the manifest that lets a rerun resume.

``manifest.json`` holds the source's identity, the job's settings, the plan (chunk ranges as they
are planned; once complete, the scene starts) and, per finished chunk, its range, frame count,
segment hash, device and host. It is rewritten atomically at every change. A rerun with the same
source and settings keeps every segment whose file still has its recorded hash and computes the
rest (scanning the source again when the plan was not complete: the plan is deterministic); any
other difference is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import vapoursynth as vs

from edvr_vs.chunks import Chunk
from edvr_vs.files import partial_name, sha256_of, write_text_atomic
from edvr_vs.os_support import LockBusy, exclusive_lock, remove, same_path

VERSION = 1
LOCK = ".lock"
EDGE_BYTES = 1 << 20
SEGMENT_SUFFIX = ".nut"  # NUT keeps each stream's exact time base, so joined timestamps add up exactly


def source_identity(path: str, clip: vs.VideoNode) -> dict[str, object]:
    """Path, size, modification time, sha256 of the first and last MiB, and the decoded clip's shape."""
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(EDGE_BYTES))
        f.seek(max(0, st.st_size - EDGE_BYTES))
        h.update(f.read(EDGE_BYTES))
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "edges_sha256": h.hexdigest(), "frames": clip.num_frames, "width": clip.width,
            "height": clip.height, "format": clip.format.name, "fps": [clip.fps.numerator, clip.fps.denominator]}


class WorkDirError(RuntimeError):
    """A work folder that cannot be used: another job's, not a work folder, or in use by another run."""


class WorkDir:
    """A folder of segments ``chunk-NNNNN.nut`` and ``manifest.json``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.manifest_path = self.path / "manifest.json"
        self.lock_path = self.path / LOCK
        self.manifest: dict[str, object] = {}
        self._lock = contextlib.ExitStack()
        self._leftovers: set[Path] = set()  # partial segments that a dead worker's ffmpeg still held

    def lock(self) -> None:
        """Create the folder if needed and take it for this run (an exclusive lock on ``.lock``, released
        when the process ends); a second run on the same folder is refused."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock.enter_context(exclusive_lock(self.lock_path, wait=False))
        except LockBusy:
            raise WorkDirError(f"{self.path} is in use by another edvr-vs run") from None
        except OSError as e:
            raise WorkDirError(f"cannot use {self.path} as the work folder: {e}") from None

    def segment(self, chunk: Chunk) -> Path:
        return self.path / f"chunk-{chunk.index:05d}{SEGMENT_SUFFIX}"

    def load(self) -> dict[str, object] | None:
        """The manifest of an earlier run, or None."""
        if not self.manifest_path.exists():
            if self.path.is_dir() and any(p.name != LOCK for p in self.path.iterdir()):
                raise WorkDirError(f"{self.path} is not empty and has no manifest.json, so it is not an "
                                       f"edvr-vs work folder; give --work-dir a new or empty folder")
            return None
        try:
            earlier = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise WorkDirError(f"{self.manifest_path} cannot be read ({e}); delete {self.path} to start over")
        if not (isinstance(earlier, dict) and all(isinstance(earlier.get(k), dict) for k in ("source", "settings", "done"))):
            raise WorkDirError(f"{self.manifest_path} is not an edvr-vs manifest; give --work-dir a new or "
                                   f"empty folder")
        return earlier

    def check(self, earlier: dict[str, object], source: dict[str, object], settings: dict[str, object]) -> None:
        """Refuse a manifest made for another source or other settings, naming what changed."""
        def differs(key: str, was: object, now: object) -> bool:  # a path as the OS compares it
            if key == "path" and isinstance(was, str) and isinstance(now, str):
                return not same_path(was, now)
            return was != now

        changed = [f"source {k} ({earlier['source'].get(k)!r} -> {v!r})" for k, v in source.items()
                   if differs(k, earlier.get("source", {}).get(k), v)]
        changed += [f"{k} ({earlier['settings'].get(k)!r} -> {v!r})" for k, v in settings.items()
                    if earlier.get("settings", {}).get(k) != v]
        if earlier.get("version") != VERSION:
            changed.append(f"manifest version ({earlier.get('version')!r} -> {VERSION})")
        if changed:
            raise WorkDirError(f"{self.path} holds the parts of another job: {'; '.join(changed)}. Delete it, "
                                   f"or give --work-dir another folder, to start over")

    def start(self, source: dict[str, object], settings: dict[str, object],
              earlier: dict[str, object] | None) -> dict[int, tuple[int, int]]:
        """Begin this run's manifest, keeping an earlier run's finished chunks whose segments are present
        with their recorded hash; returns them as index -> (start, stop)."""
        self.discard_partials()
        done = {}
        for key, rec in (earlier or {}).get("done", {}).items():
            seg = self.path / rec["segment"]
            if seg.is_file() and sha256_of(seg) == rec["sha256"]:
                done[key] = rec
        self.manifest = {"version": VERSION, "source": source, "settings": settings, "plan_complete": False,
                         "scene_starts": None, "chunks": [], "done": done}
        self._write()
        return {int(k): (rec["start"], rec["stop"]) for k, rec in done.items()}

    def add_chunk(self, chunk: Chunk) -> None:
        """Note a planned chunk (chunks arrive in order while the source is still being scanned)."""
        self.manifest["chunks"].append([chunk.start, chunk.stop, chunk.context])
        self._write()

    def finish_plan(self, starts: list[int]) -> None:
        """Note that the plan is complete: a rerun uses these scene starts without scanning again."""
        self.manifest.update(plan_complete=True, scene_starts=starts)
        self._write()

    def record(self, chunk: Chunk, result: dict[str, object]) -> None:
        """Note a finished chunk (its segment already in place)."""
        self.manifest["done"][str(chunk.index)] = {"segment": self.segment(chunk).name, "start": chunk.start,
                                                   "stop": chunk.stop, **result}
        self._write()

    def release(self, remove_folder: bool = False) -> None:
        """Give the folder up without touching its contents (the lock file aside: released first, then
        removed, as Windows requires; one it cannot remove yet stays harmlessly); ``remove_folder``: also
        remove the folder when it is empty."""
        self._lock.close()
        remove(self.lock_path)
        if remove_folder:
            try:
                self.path.rmdir()
            except OSError:
                pass

    def remove(self) -> None:
        """Delete the segments and the manifest, and the folder if nothing else is in it."""
        if not self.path.is_dir():
            return
        self.discard_partials()
        for p in [*self.path.glob(f"chunk-*{SEGMENT_SUFFIX}"), self.manifest_path]:
            p.unlink(missing_ok=True)
        self.release(remove_folder=True)

    def discard_partials(self) -> None:
        """Remove segments left half-written by workers that died."""
        self._discard(self.path.glob(partial_name(Path(f"chunk-*{SEGMENT_SUFFIX}"))))

    def discard_partial(self, chunk: Chunk) -> None:
        """Remove what a dead worker left half-written of ``chunk``'s segment."""
        self._discard(self.path.glob(partial_name(self.segment(chunk))))

    def _discard(self, paths: Iterable[Path]) -> None:
        """Delete ``paths`` and any file an earlier call could not; one that a killed worker's ffmpeg
        still holds (Windows refuses to delete an open file) is tried again at the next call."""
        for p in {*paths, *self._leftovers}:
            if remove(p):
                self._leftovers.discard(p)
            else:
                self._leftovers.add(p)

    def _write(self) -> None:
        write_text_atomic(self.manifest_path, json.dumps(self.manifest, indent=1))
