"""The engine under memory pressure, on the CPU with out-of-memory errors injected where CUDA would raise
them: the cache gives way before the tiles, concurrent failures relieve one plan once, each frame is
uploaded once per request, and host waits sleep."""

from __future__ import annotations

import contextlib
import threading

import pytest
import torch
import vapoursynth as vs

from edvr_vs import frame_io
from edvr_vs.engine import CACHE_MEMORY_FRACTION, MIN_TILE, cache_frames_for
from edvr_vs.numerics import ieee_fp32, numerics
from edvr_vs.filter import edvr, edvr_with_engine
from edvr_vs.frame_io import clip_from_frames, frame_tensor
from edvr_vs.window import window_indices
from tests.conftest import demo_frames

core = vs.core


def oom_when(engine, too_big) -> list[int]:
    """Make ``engine.window_output`` raise CUDA's out-of-memory error while ``too_big(engine)`` holds;
    returns the list of plan generations that raised."""
    real = engine.window_output
    raised = []

    def window_output(frames, center):
        if too_big(engine):
            raised.append(engine.plan.generation)
            raise torch.cuda.OutOfMemoryError("injected: CUDA out of memory")
        return real(frames, center)

    engine.window_output = window_output
    return raised


def test_cache_gives_way_before_the_tiles(tiny_weights, capfd):
    clip = clip_from_frames(demo_frames(12, (48, 32)))
    want = [frame_tensor(f) for f in edvr(clip, weights=tiny_weights, device="cpu").frames()]
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu")
    for n in range(6):  # fill the cache beyond one window
        out.get_frame(n)
    assert len(engine.frame_cache) > 5
    raised = oom_when(engine, lambda e: len(e.frame_cache) > 5)
    got = [frame_tensor(out.get_frame(n)) for n in range(12)]
    assert raised == [0]  # one failure, relieved by evicting: the same plan (generation 0), whole frames
    assert engine.plan.generation == 0 and engine.plan.evicted and len(engine.tiles) == 1
    assert engine.relief_steps == ["keeping one window of frames per tile (5)"]
    assert engine.frame_cache.capacity == 5
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert capfd.readouterr().err.count("CUDA ran out of memory; keeping one window of frames per tile") == 1


def test_tiles_shrink_when_one_window_does_not_fit(tiny_weights, capfd):
    clip = clip_from_frames(demo_frames(6, (256, 64)))
    whole = [frame_tensor(f) for f in edvr(clip, weights=tiny_weights, device="cpu").frames()]
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu")
    raised = oom_when(engine, lambda e: max(t.rx1 - t.rx0 for t in e.tiles) > 150)
    got = [frame_tensor(f) for f in out.frames()]
    # regions read: 256 wide fails, 128 + 32 overlap = 160 fails, at most 64 + 2·32 = 128 fits: two steps
    assert set(raised) == {0, 1} and engine.plan.generation == 2 and MIN_TILE == 64  # (two requests in flight)
    assert [(t.x0, t.x1) for t in engine.tiles] == [(0, 64), (64, 128), (128, 192), (192, 256)]
    assert engine.relief_steps == ["processing in tiles of 128x64 (overlap 32x32)",
                                   "processing in tiles of 64x64 (overlap 32x32)"]
    assert {k[0] for k in engine.frame_cache.keys()} == {2}  # only the current plan's work is cached
    assert max((a - b).abs().max().item() for a, b in zip(got, whole)) <= 1e-5
    assert capfd.readouterr().err.count("CUDA ran out of memory") == 1  # said once


def test_no_step_left_reraises(tiny_weights):
    clip = clip_from_frames(demo_frames(5, (64, 48)))
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu")
    oom_when(engine, lambda e: True)
    with pytest.raises(vs.Error, match="injected: CUDA out of memory"):
        out.get_frame(2)
    assert engine.frame_cache.stats.computes >= 3  # the failure left the cache consistent: work kept


def test_concurrent_failures_relieve_a_plan_once(tiny_weights):
    """Four requests fail under plan 0 at the same moment; one shrink (to regions 128 + 32 = 160 wide) suffices,
    and the others retry under the new plan instead of shrinking it again."""
    clip = clip_from_frames(demo_frames(8, (256, 64)))
    whole = [frame_tensor(f) for f in edvr(clip, weights=tiny_weights, device="cpu").frames()]
    _, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu")
    barrier = threading.Barrier(4)
    real = engine.window_output

    def window_output(frames, center):
        if max(t.rx1 - t.rx0 for t in engine.tiles) > 200:
            try:
                barrier.wait(timeout=5)  # all four fail under plan 0 before any relieves it
            except threading.BrokenBarrierError:
                pass
            raise torch.cuda.OutOfMemoryError("injected")
        return real(frames, center)

    engine.window_output = window_output
    engine._cpu_turn = _NoTurn()  # let the four requests really run at once
    frames = torch.stack([frame_tensor(f) for f in clip.frames()])
    results: dict[int, torch.Tensor] = {}

    def request(n: int) -> None:
        window = window_indices(n, 2, 0, 7, "reflection_circle")
        results[n] = engine.restore(window, n, lambda i: frames[i]).float()

    threads = [threading.Thread(target=request, args=(n,)) for n in (1, 3, 5, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [1, 3, 5, 7]
    assert engine.plan.generation == 1 and len(engine.tiles) == 2  # shrunk once, not four times
    assert len(engine.relief_steps) <= 2 and engine.relief_steps[-1].startswith("processing in tiles of 128x64")
    for n, got in results.items():
        assert (got - whole[n]).abs().max().item() <= 1e-4


class _NoTurn:
    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        pass


def test_each_frame_uploaded_once_per_request_whatever_the_tiles(tiny_weights):
    clip = clip_from_frames(demo_frames(5, (64, 48)))
    _, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu", tile=(32, 24))
    assert len(engine.tiles) == 4
    frames = torch.stack([frame_tensor(f) for f in clip.frames()])
    calls = []

    def get_rgb(i: int) -> torch.Tensor:
        calls.append(i)
        return frames[i]

    engine.restore([4, 3, 0, 1, 2], 0, get_rgb)  # reflection_circle window of frame 0
    assert sorted(calls) == [0, 1, 2, 3, 4]  # once each, not once per tile (20)
    engine.restore([3, 4, 0, 1, 2], 0, get_rgb)  # same frames, all cached now
    assert len(calls) == 5


def test_cuda_cache_size_from_free_memory():
    # M at 540p in fp16: 264 MB a frame; 8 GB free → half of it holds 15 frames of the 37 wanted
    per_frame = 264_000_000
    assert CACHE_MEMORY_FRACTION == 0.5
    assert cache_frames_for(per_frame, 8 * 10 ** 9, 1, 5, 37) == 15
    assert cache_frames_for(per_frame, 80 * 10 ** 9, 1, 5, 37) == 37  # plenty: what is wanted
    assert cache_frames_for(per_frame, 10 ** 9, 1, 5, 37) == 5  # never less than a window
    assert cache_frames_for(per_frame, 8 * 10 ** 9, 4, 5, 37) == 5  # four tiles share the budget (3 each fit)


def test_host_waits_sleep(monkeypatch):
    """The download's wait is a blocking-sync event on the request's stream: the thread sleeps."""
    made = []

    class Event:
        def __init__(self, **kwargs: object) -> None:
            self.kwargs, self.steps = kwargs, []
            made.append(self)

        def record(self, stream: object) -> None:
            self.steps.append(("record", stream))

        def synchronize(self) -> None:
            self.steps.append("synchronize")

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream of", device))
    frame_io.wait_for_stream(torch.device("cuda", 1))
    (event,) = made
    assert event.kwargs == {"blocking": True}
    assert event.steps == [("record", ("stream of", torch.device("cuda", 1))), "synchronize"]


def test_fp32_on_cuda_means_ieee_and_the_process_keeps_its_switches():
    b = torch.backends
    before = (b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision)
    assert isinstance(numerics(torch.device("cpu"), torch.float32), contextlib.nullcontext)
    assert isinstance(numerics(torch.device("cuda"), torch.float16), contextlib.nullcontext)
    inside, entered, release = [], threading.Event(), threading.Event()

    def other_request() -> None:
        with numerics(torch.device("cuda"), torch.float32):
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=other_request)
    with ieee_fp32():
        inside.append((b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision))
        thread.start()
        entered.wait(5)
    inside.append((b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision))  # the other block still runs
    release.set()
    thread.join(5)
    assert inside == [("ieee", "ieee"), ("ieee", "ieee")]
    assert (b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision) == before  # put back when the last ends
    assert isinstance(b.cudnn.allow_tf32, bool)  # and torch's legacy view of it still reads


def test_autotune_sets_cudnn_benchmark_only_inside_cuda_work():
    b = torch.backends.cudnn
    before = b.benchmark
    assert isinstance(numerics(torch.device("cpu"), torch.float16, autotune=True), contextlib.nullcontext)
    assert isinstance(numerics(torch.device("cuda"), torch.float16, autotune=False), contextlib.nullcontext)
    with numerics(torch.device("cuda"), torch.float16, autotune=True):
        assert b.benchmark is True
        with numerics(torch.device("cuda"), torch.float32, autotune=True):
            assert b.benchmark is True and b.conv.fp32_precision == "ieee"
        assert b.benchmark is True
    assert b.benchmark == before
