"""Files that appear whole or not at all, and their hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from edvr_vs.os_support import ReplaceError, remove, replace

CHUNK = 1 << 20


def partial_name(path: Path, pid: str = "*") -> str:
    """The name ``atomic_output`` writes ``path`` under while process ``pid`` works on it (``*``: a
    glob pattern for any process's)."""
    return f".{path.stem}.partial-{pid}{path.suffix}"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends without
    an exception, deleted when it raises (or is interrupted). The temporary name keeps ``path``'s
    suffix (encoders pick the container from it) and is hidden, with this process's id in it. A rename
    that something holding ``path`` open keeps refusing (Windows) raises ReplaceError and keeps the
    finished temporary file, named in the message."""
    path = Path(path)
    tmp = path.with_name(partial_name(path, str(os.getpid())))
    kept = False
    try:
        yield tmp
        try:
            replace(tmp, path)
        except ReplaceError:
            kept = True
            raise
    finally:
        if not kept:
            remove(tmp)  # a file that a dying child still holds (Windows) must not hide the error


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """``text`` into ``path``, whole or not at all, on disk (fsync) before the rename."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The file's sha256, lower-case hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()
