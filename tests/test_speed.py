"""The fast-path switches of edvr(): each one on or off gives the same frames; CUDA graphs replay correctly."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import inspect
import re
import threading
import time
import warnings

import numpy as np
import pytest
import torch
import vapoursynth as vs

from edvr_vs import cli
from edvr_vs.engine import Engine
from edvr_vs.filter import edvr, edvr_with_engine
from edvr_vs.frame_io import clip_from_frames, frame_tensor
from edvr_vs.graphs import GraphCache
from edvr_vs.nn.dcn import DCNv2Pack
from edvr_vs.nn.edvr import EDVR
from edvr_vs.speed import Speed, parse_value
from tests.conftest import REPO, demo_frames

core = vs.core


@pytest.fixture(scope="module")
def clip():
    return clip_from_frames(demo_frames(7, (48, 32)))


def frames(node: vs.VideoNode) -> list[torch.Tensor]:
    return [frame_tensor(f) for f in node.frames()]


def max_rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(((x - y).abs().max() / y.abs().max()).item() for x, y in zip(a, b))


@pytest.fixture(scope="module")
def default_frames(clip, tiny_weights):
    return frames(edvr(clip, weights=tiny_weights, device="cpu"))


@pytest.mark.parametrize("switch", [dict(channels_last=False), dict(batch_align=True),
                                    dict(channels_last=False, batch_align=True), dict(fused_convs=False)])
def test_switches_flipped_give_the_same_frames(clip, tiny_weights, default_frames, switch):
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu", **switch)
    assert all(getattr(engine.speed, k) == v for k, v in switch.items())
    pcd = engine.model.pcd_align
    batches = []

    def align(nbr, ref_l1, first):
        batches.append(nbr[0].shape[0])
        return type(pcd).forward(pcd, nbr, ref_l1, first)

    pcd.forward = align
    assert max_rel(frames(out), default_frames) <= 1e-5
    # Not a no-op: the layout and the alignment calls are what the switches say.
    assert engine.model.conv_first.weight.is_contiguous() == ("channels_last" in switch)
    assert engine.model.conv_first.fused == ("fused_convs" not in switch)
    assert batches == ([5] * 7 if "batch_align" in switch else [1] * 5 * 7)


def test_cpu_defaults_channels_last_and_one_alignment_per_frame(clip, tiny_weights):
    _, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu")
    weight = engine.model.conv_first.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert engine.speed.batch_align is None and engine.batch_align is False


@pytest.mark.cuda
def test_cuda_default_batches_the_alignments(clip, tiny_weights):
    _, engine = edvr_with_engine(clip, weights=tiny_weights, device="cuda")
    assert engine.batch_align is True


def large_offsets(engine) -> None:
    with torch.no_grad():
        engine.model.pcd_align.dcn_pack["l3"].conv_offset.bias.add_(200)


def test_check_offsets_warns_like_basicsr(clip, tiny_weights, default_frames):
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu", check_offsets=True)
    packs = [m for m in engine.model.modules() if isinstance(m, DCNv2Pack)]
    assert len(packs) == 4 and all(m.check_offsets for m in packs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # small offsets: checked, nothing to say
        assert all(torch.equal(a, b) for a, b in zip(frames(out), default_frames))
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu", check_offsets=True)
    large_offsets(engine)
    with pytest.warns(UserWarning, match=r"DCNv2Pack: offset mean is \d+\.\d, larger than 50"):
        out.get_frame(3)


def test_offsets_unchecked_by_default(clip, tiny_weights):
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu")
    assert not any(m.check_offsets for m in engine.model.modules() if isinstance(m, DCNv2Pack))
    large_offsets(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out.get_frame(3)


# ---- GraphCache's bookkeeping, with a stand-in for CUDA's graph API ------------------------------

class FakeStream:
    def __init__(self, ptr: int, device: object = None) -> None:
        self.cuda_stream, self.device = ptr, device

    def wait_stream(self, other: FakeStream) -> None:
        pass


class FakeGraph:
    """Replay re-runs what was captured on the static inputs, into the static output, as a CUDA graph does."""

    capturing: FakeGraph | None = None

    def __init__(self) -> None:
        self.body = None

    def replay(self) -> None:
        time.sleep(0.001)  # a GPU runs concurrently with the host: let other threads in
        self.body()


@contextlib.contextmanager
def fake_capture(graph: FakeGraph, pool: object, stream: FakeStream, capture_error_mode: str):
    assert capture_error_mode == "thread_local"
    FakeGraph.capturing = graph
    graph.pool, graph.stream = pool, stream
    graph.device = FakeDevice.current
    try:
        yield
    finally:
        FakeGraph.capturing = None


class FakeDevice:
    """``torch.cuda.device(d)``: makes d current for the block."""

    current: object = "the thread's own"

    def __init__(self, device: object) -> None:
        self.device = device

    def __enter__(self) -> None:
        self.saved, FakeDevice.current = FakeDevice.current, self.device

    def __exit__(self, *exc: object) -> None:
        FakeDevice.current = self.saved


def test_graph_cache_bookkeeping(monkeypatch, capsys):
    """Static inputs refilled per call, results copied out, one graph per (stream, shapes), and
    threads sharing a graph never see each other's inputs."""
    local = threading.local()
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: getattr(local, "stream", FakeStream(0)))
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: FakeStream(99, device))
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", fake_capture)
    monkeypatch.setattr(torch.cuda, "device", FakeDevice)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", object)  # a new, distinct handle per call
    calls = []
    captured = []

    def net(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(FakeGraph.capturing is not None)
        out = a @ b + 1
        graph = FakeGraph.capturing
        if graph is not None:
            captured.append(graph)

            def body():
                with torch.inference_mode():
                    torch.matmul(a, b, out=out).add_(1)
            graph.body = body
        return out

    device = torch.device("cuda", 1)
    graphs = GraphCache(net, lambda shape: torch.empty(shape), device)

    def run(seed: int, rows: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        a, b = torch.randn(rows, 5, generator=g), torch.randn(5, 4, generator=g)
        shapes = [torch.Size((rows, 5)), torch.Size((5, 4))]
        with torch.inference_mode():
            got = graphs(shapes, lambda bufs: [torch.cat([x], out=o) for o, x in zip(bufs, (a, b))])
        return got, a @ b + 1

    results = [run(seed) for seed in range(3)]
    assert calls == [False, True] and len(graphs) == 1  # warm-up, capture; then replays only
    assert capsys.readouterr().err.count("edvr: capturing a CUDA graph on cuda:1 for inputs [(6, 5), (5, 4)]") == 1
    for got, want in results:  # each result is its own copy, not the graph's static output
        torch.testing.assert_close(got, want)

    def worker(offset: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [run(100 * offset + i) for i in range(20)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for batch in pool.map(worker, range(4)):
            for got, want in batch:
                torch.testing.assert_close(got, want)
    assert len(graphs) == 1

    torch.testing.assert_close(*run(6, rows=3))  # another shape on the same stream: its own graph, same pool
    local.stream = FakeStream(7)  # another stream: its own graph, buffers and pool
    torch.testing.assert_close(*run(5))
    assert len(graphs) == 3 and calls.count(True) == 3
    assert captured[0].pool is captured[1].pool and captured[2].pool is not captured[0].pool
    assert all(g.device == device for g in captured)  # captured with the cache's device current,
    assert all(g.stream.device == device for g in captured)  # on a capture stream of that device
    locks = {k[0]: c.lock for k, c in graphs._graphs.items()}  # one lock per stream: its graphs share memory
    assert len(set(map(id, locks.values()))) == 2 and len(graphs._graphs) == 3
    graphs.clear()
    assert len(graphs) == 0


# ---- CUDA -----------------------------------------------------------------------------------

@pytest.mark.cuda
def test_graph_cache_replays_fresh_inputs():
    device = torch.device("cuda")
    calls = []

    def net(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(1)  # runs at warm-up and capture only
        return torch.relu(a @ b) + 1

    graphs = GraphCache(net, lambda s: torch.empty(s, device=device), device)
    outs = []
    for seed in range(3):
        g = torch.Generator(device).manual_seed(seed)
        a, b = (torch.randn(32, 32, device=device, generator=g) for _ in range(2))
        outs.append((graphs([a.shape, b.shape], lambda bufs: [x.copy_(y) for x, y in zip(bufs, (a, b))]),
                     torch.relu(a @ b) + 1))
    assert len(graphs) == 1 and len(calls) == 2
    for got, want in outs:  # each result is its own copy, not the graph's static output
        torch.testing.assert_close(got, want)
    graphs([torch.Size((16, 32)), torch.Size((32, 8))],
           lambda bufs: [x.normal_() for x in bufs])
    assert len(graphs) == 2


@pytest.mark.cuda
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-5), ("fp16", 2e-3)])
def test_cuda_graphs_give_the_eager_frames(clip, tiny_weights, precision, tol):
    eager = frames(edvr(clip, weights=tiny_weights, device="cuda", precision=precision))
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cuda", precision=precision, cuda_graphs=True)
    assert max_rel(frames(out), eager) <= tol
    assert len(engine.graphs) == 1  # one stream, one shape


@pytest.mark.cuda
def test_cuda_graphs_with_streams_and_tiles(tiny_weights):
    clip = clip_from_frames(demo_frames(8, (80, 48)))
    eager = frames(edvr(clip, weights=tiny_weights, device="cuda", precision="fp32", tile=(48, 32)))
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cuda", precision="fp32", tile=(48, 32),
                                   cuda_graphs=True, num_streams=3)
    futures = [out.get_frame_async(n) for n in range(out.num_frames)]
    got = [frame_tensor(f.result()) for f in futures]
    assert max_rel(got, eager) <= 1e-5
    # 4 tiles of 4 distinct shapes, on up to 3 streams
    assert 4 <= len(engine.graphs) <= 12


@pytest.mark.cuda
@pytest.mark.parametrize("fmt", [vs.YUV420P8, vs.YUV444P16, vs.RGBH])
def test_pinned_memory_changes_nothing(clip, tiny_weights, fmt):
    src = core.resize.Bilinear(clip, format=fmt, matrix=1) if fmt != vs.RGBH else core.resize.Point(clip, format=fmt)
    a = edvr(src, weights=tiny_weights, device="cuda", precision="fp32", pinned_memory=True)
    b = edvr(src, weights=tiny_weights, device="cuda", precision="fp32", pinned_memory=False)
    for fa, fb in zip(a.frames(), b.frames()):
        for p in range(3):
            assert np.array_equal(np.asarray(fa[p]), np.asarray(fb[p]))


@pytest.mark.cuda
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_vram_stays_flat_over_a_long_clip(tiny_weights, cuda_graphs):
    clip = clip_from_frames(demo_frames(8, (64, 48))) * 40  # 320 frames
    out = edvr(core.resize.Bilinear(clip, format=vs.YUV420P8, matrix=1), weights=tiny_weights, device="cuda",
               cuda_graphs=cuda_graphs, num_streams=2)
    torch.cuda.synchronize()
    for n, _ in enumerate(out.frames()):
        if n == 40:  # after warm-up: frame cache full, graphs captured
            torch.cuda.synchronize()
            after_warmup = torch.cuda.memory_allocated()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - after_warmup <= 2 ** 20


def test_bf16_on_the_cpu_is_close_to_fp32(tiny_weights):
    """bf16 storage (AMX/AVX-512 convolutions where the CPU has them) with fp32 sampling positions,
    on frames 320 wide, where bf16 positions would be off by up to 2 pixels."""
    wide = clip_from_frames(demo_frames(5, (320, 32)))
    want = frames(edvr(wide, weights=tiny_weights, device="cpu"))
    got = frames(edvr(wide, weights=tiny_weights, device="cpu", precision="bf16"))
    err = torch.stack([(a - b).abs() for a, b in zip(got, want)])
    assert torch.isfinite(err).all()
    assert err.max() <= 3 / 255 and err.mean() <= 0.5 / 255


@pytest.mark.parametrize("switches,match", [
    (dict(cuda_graphs=True), "'cuda_graphs' needs CUDA; the device is 'cpu'"),
    (dict(check_offsets=True, cuda_graphs=True), "'check_offsets' synchronises with the host"),
])
def test_engine_refuses_impossible_switches(switches, match):
    with pytest.raises(ValueError, match=match):
        Engine(EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1), torch.device("cpu"), "fp32",
               width=16, height=16, tile=None, tile_overlap=(0, 0), cache_frames=5, speed=Speed(**switches))


@pytest.mark.cuda
def test_request_context_makes_device_and_pool_streams_current(clip, tiny_weights):
    index = torch.cuda.device_count() - 1  # the last GPU: not the worker threads' default on multi-GPU machines
    _, engine = edvr_with_engine(clip, weights=tiny_weights, device=f"cuda:{index}", num_streams=2)
    seen = set()
    for _ in range(4):
        with engine.request_context():
            assert torch.cuda.current_device() == index
            seen.add(torch.cuda.current_stream().cuda_stream)
    assert len(seen) == 2 and torch.cuda.current_stream(index).cuda_stream not in seen



# ---- one definition of the switches: edvr()'s signature and docstring, the CLI, the README --------

def test_edvr_signature_and_docstring_carry_every_switch():
    params = inspect.signature(edvr).parameters
    for f in dataclasses.fields(Speed):
        p = params[f.name]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY
        assert (p.default, p.annotation) == (f.default, f.type)
        assert f"{f.name} (default {f.default!r}" in edvr.__doc__ and f.metadata["help"] in edvr.__doc__


def test_every_documented_keyword_is_in_the_signature():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## `edvr_vs.edvr(", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert len(documented) == 19
    params = inspect.signature(edvr).parameters
    assert documented == set(params) - {"clip"}
    for name in documented - {f.name for f in dataclasses.fields(Speed)}:
        assert f"{name}:" in edvr.__doc__  # each has its own line in the docstring


def test_readme_switch_table_is_speeds_own_text():
    readme = (REPO / "README.md").read_text()
    for f in dataclasses.fields(Speed):
        cuda = " (CUDA only)" if f.metadata["cuda_only"] else ""
        assert f"| `{f.name}` | `{f.default}` | {f.metadata['help']}{cuda} |" in readme


def test_cli_flags_come_from_speed():
    parser = cli.build_parser()
    args = parser.parse_args(["run", "in.mp4", "-o", "out.mkv", "--num-streams", "3", "--cuda-graphs",
                              "--no-channels-last", "--no-batch-align"])
    assert cli.speed_options(args) == {"num_streams": 3, "cuda_graphs": True, "channels_last": False,
                                       "batch_align": False}
    assert cli.speed_options(parser.parse_args(["run", "in.mp4", "-o", "out.mkv"])) == {}
    run_help = parser._subparsers._group_actions[0].choices["run"].format_help()
    for f in dataclasses.fields(Speed):
        assert "--" + f.name.replace("_", "-") in run_help


@pytest.mark.parametrize("name,text,want", [("num_streams", "2", 2), ("batch_align", "None", None),
                                            ("batch_align", "true", True), ("cuda_graphs", "FALSE", False)])
def test_switch_values_parse(name, text, want):
    assert parse_value(next(f for f in dataclasses.fields(Speed) if f.name == name), text) == want


@pytest.mark.parametrize("name,text,match", [("num_streams", "0", "'num_streams' must be an int ≥ 1, got 0"),
                                             ("num_streams", "two", "'num_streams' must be an int, got 'two'"),
                                             ("cuda_graphs", "none", r"'cuda_graphs' must be True or False, got None"),
                                             ("channels_last", "yes", "'channels_last' must be True or False")])
def test_bad_switch_values_are_refused(name, text, match):
    with pytest.raises(ValueError, match=match):
        parse_value(next(f for f in dataclasses.fields(Speed) if f.name == name), text)
