"""Files that appear whole or not at all, their hashes, and a lock that works across processes."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

CHUNK = 1 << 20


def partial_name(path: Path, pid: str = "*") -> str:
    """The name ``atomic_output`` writes ``path`` under while process ``pid`` works on it (``*``: a
    glob pattern for any process's)."""
    return f".{path.stem}.partial-{pid}{path.suffix}"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends without
    an exception, deleted when it raises (or is interrupted). The temporary name keeps ``path``'s
    suffix (encoders pick the container from it) and is hidden, with this process's id in it."""
    path = Path(path)
    tmp = path.with_name(partial_name(path, str(os.getpid())))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block, waiting for
    another holder first (``on_wait`` is called once if so). The lock is ``flock`` on a descriptor of
    its own, so it excludes other processes and other threads alike, and the kernel drops it when its
    holder dies: a lock file left behind by a killed process blocks nobody."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """``text`` into ``path``, whole or not at all, on disk (fsync) before the rename."""
    with atomic_output(path) as tmp:
        with open(tmp, "w") as f:
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
