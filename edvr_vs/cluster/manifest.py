"""The work folder of a distributed run: finished segments and the manifest that lets a rerun resume.

``manifest.json`` holds the source's identity, the job's settings, the plan (scene starts, chunk
ranges) and, per finished chunk, its frame count, segment hash, device and host. It is rewritten
atomically after every chunk. A rerun with the same source and settings keeps every segment whose
file still has its recorded hash and computes the rest; any other difference is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import vapoursynth as vs

from edvr_vs.chunks import Chunk
from edvr_vs.files import sha256_of, write_text_atomic

VERSION = 1
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


class ManifestMismatch(RuntimeError):
    """The work folder belongs to another source or other settings."""


class WorkDir:
    """A folder of segments ``chunk-NNNNN.nut`` and ``manifest.json``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.manifest_path = self.path / "manifest.json"
        self.manifest: dict[str, object] = {}

    def segment(self, chunk: Chunk) -> Path:
        return self.path / f"chunk-{chunk.index:05d}{SEGMENT_SUFFIX}"

    def load(self) -> dict[str, object] | None:
        """The manifest of an earlier run, or None."""
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as e:
            raise ManifestMismatch(f"{self.manifest_path} cannot be read ({e}); delete {self.path} to start over")

    def check(self, earlier: dict[str, object], source: dict[str, object], settings: dict[str, object]) -> None:
        """Refuse a manifest made for another source or other settings, naming what changed."""
        changed = [f"source {k} ({earlier['source'].get(k)!r} -> {v!r})" for k, v in source.items()
                   if earlier.get("source", {}).get(k) != v]
        changed += [f"{k} ({earlier['settings'].get(k)!r} -> {v!r})" for k, v in settings.items()
                    if earlier.get("settings", {}).get(k) != v]
        if earlier.get("version") != VERSION:
            changed.append(f"manifest version ({earlier.get('version')!r} -> {VERSION})")
        if changed:
            raise ManifestMismatch(f"{self.path} holds the parts of another job: {'; '.join(changed)}. Delete it, "
                                   f"or give --work-dir another folder, to start over")

    def start(self, source: dict[str, object], settings: dict[str, object], starts: list[int],
              chunks: list[Chunk], earlier: dict[str, object] | None) -> set[int]:
        """Write the manifest for this plan (keeping an earlier run's finished chunks); returns the
        indices of the chunks whose segments are present with their recorded hash."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.discard_partials()
        done = {}
        for key, rec in (earlier or {}).get("done", {}).items():
            seg = self.path / rec["segment"]
            if seg.is_file() and sha256_of(seg) == rec["sha256"]:
                done[key] = rec
        self.manifest = {"version": VERSION, "source": source, "settings": settings, "scene_starts": starts,
                         "chunks": [[c.start, c.stop, c.context] for c in chunks], "done": done}
        self._write()
        return {int(k) for k in done}

    def record(self, chunk: Chunk, result: dict[str, object]) -> None:
        """Note a finished chunk (its segment already in place)."""
        self.manifest["done"][str(chunk.index)] = {"segment": self.segment(chunk).name, "start": chunk.start,
                                                   "stop": chunk.stop, **result}
        self._write()

    def discard_partials(self) -> None:
        """Remove segments left half-written by workers that died."""
        for p in self.path.glob(".chunk-*.partial-*"):
            p.unlink(missing_ok=True)

    def _write(self) -> None:
        write_text_atomic(self.manifest_path, json.dumps(self.manifest, indent=1))
