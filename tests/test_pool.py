"""The worker pool's judgement without Ray: nodes lost and joined, the bound on a run with no live worker,
stalled chunks, scan spans for idle workers. A small stand-in plays Ray's part (actors, refs, wait, get,
nodes) and a clock is moved by hand; the real Ray runs in tests/test_cluster.py and tests/test_multihost.py."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from types import SimpleNamespace

import pytest

from edvr_vs.chunks import Chunk
from edvr_vs.cluster import pool as pool_module
from edvr_vs.cluster.manifest import WorkDir
from edvr_vs.cluster.planning import ScanSpans
from edvr_vs.cluster.pool import WorkerPool
from edvr_vs.cluster.session import ClusterError, Slot


class Ref:
    def __init__(self, value=None, error: Exception | None = None):
        self.value, self.error, self.ready = value, error, value is not None or error is not None


class RayError(Exception):
    pass


class Actor:
    """A worker: each method call is recorded with the ref it returned."""

    def __init__(self, options: dict):
        self.options, self.calls = options, []
        for method in ("where", "encode", "scan"):
            setattr(self, method, SimpleNamespace(remote=lambda *args, _m=method: self._call(_m, args)))

    def _call(self, method: str, args: tuple) -> Ref:
        ref = Ref()
        self.calls.append((method, args, ref))
        return ref


class FakeRay:
    """Actors whose method calls return refs the test settles by hand."""

    exceptions = SimpleNamespace(RayError=RayError)

    def __init__(self):
        self.node_list = [{"NodeID": "a" * 56, "Alive": True, "NodeManagerHostname": "head", "Resources": {"CPU": 2}}]
        self.actors: list[SimpleNamespace] = []
        self.killed: list[object] = []
        self.board = {}

    def remote(self, cls):
        ray = self

        class Handle:
            def options(self, **options):
                return SimpleNamespace(remote=lambda *args: ray._actor(cls.__name__, options))

        return Handle()

    def _actor(self, kind: str, options: dict):
        if kind == "ProgressBoard":
            return SimpleNamespace(snapshot=SimpleNamespace(remote=lambda: Ref(dict(self.board))),
                                   forget=SimpleNamespace(remote=lambda i: self.board.pop(i, None)))
        actor = Actor(options)
        self.actors.append(actor)
        return actor

    def wait(self, refs, num_returns, timeout):
        return [r for r in refs if r.ready][:num_returns], []

    def get(self, ref, timeout=None):
        if ref.error:
            raise ref.error
        return ref.value

    def kill(self, actor):
        self.killed.append(actor)

    def nodes(self):
        return self.node_list

    def get_runtime_context(self):
        return SimpleNamespace(get_node_id=lambda: "a" * 56)  # the driver runs on the first node


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(pool_module.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(pool_module.time, "sleep", lambda s: None)
    return now


def make_pool(tmp_path: Path, ray: FakeRay, slots: int = 1, **kw) -> WorkerPool:
    work = WorkDir(tmp_path)
    return WorkerPool(ray, job=SimpleNamespace(), slots=[Slot("cpu", 2)] * slots, work=work, retries=3, **kw)


def start_all(ray: FakeRay, pool: WorkerPool, node: str = "a" * 56) -> None:
    for actor in ray.actors:
        for method, _, ref in actor.calls:
            if method == "where" and not ref.ready:
                ref.value, ref.ready = {"host": "head", "device": "cpu", "node": node}, True
    while pool.starting:
        pool.step(deque(), 0)


def test_no_live_worker_for_the_bound_stops_the_run_naming_the_losses(tmp_path, clock, capsys):
    ray = FakeRay()
    pool = make_pool(tmp_path, ray, lost_timeout=120)
    start_all(ray, pool)
    chunk = Chunk(0, 0, 10, 0)
    pending = deque([chunk])
    pool.step(pending, 0)
    (method, _, ref), = [c for c in ray.actors[0].calls if c[0] == "encode"]
    ray.node_list[0]["Alive"] = False  # the only node goes: its worker's task fails, a replacement waits
    ref.error, ref.ready = RayError("The actor is dead because its owner has died"), True
    clock[0] += 3
    pool.step(pending, 0)
    assert pool.alive() == 0 and pool.workers_lost == 1 and list(pending) == [chunk]
    assert "lost the Ray node head" in capsys.readouterr().err
    clock[0] += 119
    pool.step(pending, 0)  # within the bound: still waiting for the replacement
    clock[0] += 2
    with pytest.raises(ClusterError, match=r"no live worker for 120 s \(1 worker\(s\) lost; 1 node\(s\) lost: "
                                           r"head\); finished chunks are kept in .*--lost-timeout"):
        pool.step(pending, 0)


def test_a_node_that_joins_gets_workers_when_the_cluster_sizes_the_run(tmp_path, clock, capsys):
    ray = FakeRay()
    pool = make_pool(tmp_path, ray, grow_device=None)
    start_all(ray, pool)
    ray.node_list.append({"NodeID": "b" * 56, "Alive": True, "NodeManagerHostname": "second",
                          "Resources": {"CPU": 8, "GPU": 2}})
    clock[0] += 3
    pool.step(deque(), 0)
    new = ray.actors[-2:]
    assert len(ray.actors) == 1 + 2  # the first worker, then one per GPU of the new node
    assert all(a.options["num_gpus"] == 1 and a.options["scheduling_strategy"].node_id == "b" * 56 for a in new)
    assert "the Ray node second joined; starting 2 worker(s) on it" in capsys.readouterr().err
    fixed = make_pool(tmp_path / "f", ray)  # --workers N: the count stays the user's
    before = len(ray.actors)
    ray.node_list.append({"NodeID": "c" * 56, "Alive": True, "NodeManagerHostname": "third", "Resources": {"CPU": 1}})
    clock[0] += 3
    fixed.step(deque(), 0)
    assert len(ray.actors) == before


def test_a_stalled_chunk_is_cancelled_and_queued_again(tmp_path, clock, capsys):
    ray = FakeRay()
    pool = make_pool(tmp_path, ray)
    start_all(ray, pool)
    chunk = Chunk(0, 0, 100, 0)
    pending = deque([chunk])
    pool.step(pending, 0)
    assert pool.stall_limit() == 300  # nothing finished yet: the floor
    pool.frame_times += [2.0, 2.0, 30.0]
    assert pool.stall_limit() == 300  # 20 × 2 s is below it
    pool.frame_times += [30.0, 30.0]
    assert pool.stall_limit() == 600  # 20 × the median, 30 s
    pool.frame_times.clear()
    for frames in (0, 3, 3):  # frames 1-3 in the first 200 s, then nothing
        ray.board[0] = frames
        clock[0] += 100
        pool.step(pending, 0)
    assert not pending and pool.running
    clock[0] += 201  # 301 s since frame 3
    pool.step(pending, 0)
    assert list(pending) == [chunk] and not pool.running and pool.retried == 1
    assert ray.killed and "no new frame for 300 s after frame 3 (stalled;" in capsys.readouterr().err


def test_idle_workers_on_other_nodes_scan_spans_from_the_back_when_no_chunk_waits(tmp_path, clock):
    ray = FakeRay()
    spans = ScanSpans(5000, 1000)
    local = make_pool(tmp_path / "local", ray, spans=spans)
    start_all(ray, local)  # on the driver's node: its decode would only compete with the driver's
    local.step(deque(), 0)
    assert not local.scanning and spans.free == [0, 1, 2, 3, 4]
    ray.actors.clear()
    pool = make_pool(tmp_path, ray, slots=2, spans=spans)
    start_all(ray, pool, node="b" * 56)
    pool.step(deque(), 0)
    scans = [args for a in ray.actors for m, args, _ in a.calls if m == "scan"]
    assert sorted(scans) == [(3000, 4000), (4000, 5000)]
    ref = next(r for a in ray.actors for m, _, r in a.calls if m == "scan" and _ == (4000, 5000))
    ref.error, ref.ready = RayError("worker died"), True
    pool.step(deque([Chunk(0, 0, 10, 0)]), 0)  # a chunk waits: the replacement gets no span
    assert spans.free == [0, 1, 2, 4] and pool.workers_lost == 1
    ref = next(r for a in ray.actors for m, _, r in a.calls if m == "scan" and _ == (3000, 4000))
    ref.value, ref.ready = [3500], True
    pool.step(deque(), 0)
    assert spans.results == {3: [3500]} and spans.by_workers == 1
