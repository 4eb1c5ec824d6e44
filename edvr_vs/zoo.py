"""The model zoo (``zoo.yaml``) and verified downloads of its weights.

Weights live in the cache directory: ``$EDVR_VS_HOME``, else the OS's own
(``edvr_vs.os_support.cache_dir``: ``$XDG_CACHE_HOME/edvr_vs`` or ``~/.cache/edvr_vs`` on Linux,
``~/Library/Caches/edvr_vs`` on macOS, ``%LOCALAPPDATA%\\edvr_vs\\Cache`` on Windows). A download
goes to ``<file>.part`` (resumed with an HTTP range request when the server allows it, restarted cleanly
when not), is checked against the zoo's sha256 (full hash or file-name prefix), and only then renamed
into place; the full hash is recorded beside it in ``<file>.sha256`` (read and written under the lock).
A file put there by hand is verified the same way on first use. ``EDVR_VS_OFFLINE=1`` never connects
and says which file to put where.
"""

from __future__ import annotations

import html
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from edvr_vs.files import CHUNK, sha256_of, write_text_atomic
from edvr_vs.os_support import cache_dir, exclusive_lock, replace, say
from edvr_vs.nn.edvr import EDVR, EDVRConfig

GDRIVE_URL = "https://drive.google.com/uc?export=download&id={id}"


class ZooError(RuntimeError):
    """A model that cannot be found, fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: str  # basicsr | mmagic | embedded
    task: str
    scale: int
    padding: str
    arch: EDVRConfig
    file: str
    sha256: str  # full hash or prefix (lower-case hex)
    url: str | None  # None for embedded models
    psnr: dict | None = None
    notes: dict = field(default_factory=dict)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in EDVR(**self.arch.as_dict()).parameters())

    @property
    def download_url(self) -> str | None:
        if self.url and self.url.startswith("gdrive:"):
            return GDRIVE_URL.format(id=self.url.removeprefix("gdrive:"))
        return self.url


@cache
def _zoo_yaml() -> dict:
    return yaml.safe_load(resources.files("edvr_vs").joinpath("zoo.yaml").read_text(encoding="utf-8"))


@cache
def _registry() -> dict[str, ModelEntry]:
    entries = {}
    for name, e in _zoo_yaml()["models"].items():
        entries[name] = ModelEntry(
            name=name, source=e["source"], task=e["task"], scale=int(e["scale"]), padding=e["padding"],
            arch=EDVRConfig(**e["arch"]), file=e["file"], sha256=str(e["sha256"]).lower(), url=e.get("url"),
            psnr=e.get("psnr"), notes=e.get("notes") or {})
    return entries


def default_model() -> str | None:
    """The embedded model used when no model is named, if the package ships one."""
    return _zoo_yaml().get("default")


def names() -> list[str]:
    return list(_registry())


def entry(name: str) -> ModelEntry:
    reg = _registry()
    if name not in reg:
        raise ZooError(f"unknown model {name!r}; known models: {', '.join(reg)}")
    return reg[name]


def local_path(name: str) -> Path:
    e = entry(name)
    if e.source == "embedded":
        return Path(str(resources.files("edvr_vs").joinpath("weights", e.file)))
    return cache_dir() / e.file


def is_cached(name: str) -> bool:
    return local_path(name).is_file()


def _verify(path: Path, expected: str, what: str) -> str:
    digest = sha256_of(path)
    if not digest.startswith(expected):
        raise ZooError(f"{what}: sha256 of {path} is {digest}, expected {expected}"
                       f"{'…' if len(expected) < 64 else ''}")
    return digest


def weights_path(name: str, *, download: bool = True, progress: bool = True) -> Path:
    """Local, verified weights of zoo model ``name``, downloading them if needed."""
    e = entry(name)
    path = local_path(name)
    if e.source == "embedded":
        if not path.is_file():
            raise ZooError(f"embedded model {name!r} is missing from the package ({path})")
        return path
    if path.is_file():
        with exclusive_lock(_lock_path(path)):  # the stamp may be being replaced by another process
            return _verified_in_place(path, e)
    if os.environ.get("EDVR_VS_OFFLINE") or not download:
        raise ZooError(f"model {name!r} is not cached and downloads are off: put {e.file} "
                       f"(sha256 {e.sha256}…) at {path}; it is published at {e.download_url}")
    download_file(e.download_url, path, e.sha256, label=name, progress=progress)
    return path


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _verified_in_place(path: Path, e: ModelEntry) -> Path:
    """``path`` (present; its lock held) if its stamp or its hash says it is ``e``'s published file."""
    stamp = _stamp_path(path)
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip().startswith(e.sha256):
        return path
    try:
        digest = _verify(path, e.sha256, f"model {e.name!r}")
    except ZooError as err:
        raise ZooError(f"{err}; the file is not the published one: delete it and download again "
                       f"(edvr-vs download {e.name})") from None
    write_text_atomic(stamp, digest + "\n")
    return path


# ---- downloading ------------------------------------------------------------------------------

def _timeout() -> float:
    return float(os.environ.get("EDVR_VS_TIMEOUT", "30"))


def _retries() -> int:
    return int(os.environ.get("EDVR_VS_RETRIES", "3"))


def _gdrive_confirm_url(page: str, url: str) -> str | None:
    """Google Drive's "file too large to scan" page: the URL its download button goes to."""
    form = re.search(r'<form[^>]+id="download-form"[^>]+action="([^"]+)"(.*?)</form>', page, re.S)
    if form:
        action = html.unescape(form[1])
        fields = dict(re.findall(r'<input[^>]+type="hidden"[^>]+name="([^"]+)"[^>]+value="([^"]*)"', form[2]))
        return action + "?" + urllib.parse.urlencode({k: html.unescape(v) for k, v in fields.items()})
    token = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    if token:
        return url + ("&" if "?" in url else "?") + "confirm=" + token[1]
    return None


class _Progress:
    def __init__(self, label: str, total: int | None, start: int, enabled: bool) -> None:
        self.label, self.total, self.done, self.enabled = label, total, start, enabled
        self.t0, self.start, self.last = time.monotonic(), start, 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self.last >= 0.2:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = (self.done - self.start) / max(now - self.t0, 1e-6) / 1e6
        total = f"/{self.total / 1e6:.1f}" if self.total else ""
        pct = f"{100 * self.done / self.total:5.1f}% " if self.total else ""
        say(f"\r{self.label}: {pct}{self.done / 1e6:.1f}{total} MB {rate:.1f} MB/s ")

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            say("\n")


def _fetch_once(url: str, part: Path, label: str, progress: bool,
                opener: Callable[..., object]) -> None:
    """One attempt: continue ``part`` from its size if the server allows, else restart."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "edvr_vs"}
    if have:
        headers["Range"] = f"bytes={have}-"
    for _ in range(3):  # at most two confirmation pages
        resp = opener(urllib.request.Request(url, headers=headers), timeout=_timeout())
        ctype = resp.headers.get("Content-Type", "")
        if "text/html" in ctype:
            page = resp.read(1 << 20).decode("utf-8", "replace")
            resp.close()
            next_url = _gdrive_confirm_url(page, url)
            if next_url is None:
                title = re.search(r"<title>(.*?)</title>", page, re.S | re.I)
                raise ZooError(f"{label}: the server sent an HTML page instead of the file"
                               f"{' (' + title[1].strip() + ')' if title else ''}: {url}")
            url = next_url
            continue
        break
    else:
        raise ZooError(f"{label}: the download kept returning confirmation pages: {url}")
    with resp:
        if have and resp.status != 206:
            have = 0  # the server ignored the range: start again
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length else None
        bar = _Progress(label, total, have, progress)
        with open(part, "ab" if have else "wb") as f:
            while block := resp.read(CHUNK):
                f.write(block)
                bar.update(len(block))
        bar.close()
        if total is not None and part.stat().st_size != total:
            raise ConnectionError(f"connection closed after {part.stat().st_size} of {total} bytes")


def download_file(url: str, dest: Path, sha256: str, *, label: str | None = None, progress: bool = True,
                  opener: Callable[..., object] = urllib.request.urlopen) -> Path:
    """Download ``url`` to ``dest`` atomically, verified against ``sha256`` (full or prefix). Processes
    and threads fetching the same ``dest`` take turns (a lock file beside it): one downloads, the
    others wait and then find the verified file."""
    label = label or dest.name
    dest.parent.mkdir(parents=True, exist_ok=True)

    def waiting() -> None:
        if progress:
            say(f"{label}: another process is downloading it; waiting\n")

    with exclusive_lock(_lock_path(dest), on_wait=waiting):
        if dest.is_file() and sha256_of(dest).startswith(sha256):  # downloaded while this one waited
            return dest
        return _download_locked(url, dest, sha256, label, progress, opener)


def _download_locked(url: str, dest: Path, sha256: str, label: str, progress: bool,
                     opener: Callable[..., object]) -> Path:
    part = dest.with_name(dest.name + ".part")
    errors = []
    for attempt in range(1, _retries() + 1):
        try:
            _fetch_once(url, part, label, progress, opener)
            break
        except ZooError:
            part.unlink(missing_ok=True)
            raise
        except (OSError, http.client.HTTPException, ValueError) as e:  # URLError, timeouts: OSError
            errors.append(f"attempt {attempt}: {e}")
            if attempt < _retries():
                time.sleep(min(2.0 ** attempt, 10.0) * float(os.environ.get("EDVR_VS_BACKOFF", "1")))
    else:
        raise ZooError(f"{label}: download failed after {_retries()} attempts ({'; '.join(errors)}); "
                       f"the partial file {part} is kept and the next try resumes it")
    try:
        digest = _verify(part, sha256, label)
    except ZooError as e:
        part.unlink(missing_ok=True)
        raise ZooError(f"{e}; the download was corrupt or not the published file and has been deleted") from None
    replace(part, dest)
    write_text_atomic(_stamp_path(dest), digest + "\n")
    return dest
