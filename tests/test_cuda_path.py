"""The CUDA path on a real GPU (marked ``cuda``: they run where CUDA exists and skip elsewhere): kernels on
busy streams and in graphs, the real strided DCN inputs, a launch past 2³¹ column elements, eviction with
several streams, out of memory under concurrent requests, and no host synchronisation in steady state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import vapoursynth as vs

from edvr_vs.filter import edvr, edvr_with_engine
from edvr_vs.frame_io import clip_from_frames, frame_tensor
from edvr_vs.nn.dcn import DCNv2Pack, deform_conv2d
from edvr_vs.nn.sampling import sample_columns_cuda, sample_columns_torch
from edvr_vs.window import window_indices
from tests.conftest import demo_frames, gpu_memory_cap

pytestmark = pytest.mark.cuda
core = vs.core
GEOMETRY = ((3, 3), (1, 1), (1, 1), (1, 1))


def dcn_inputs(b: int, c: int, h: int, w: int, g: int, dtype: torch.dtype = torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=gen)
    offset = torch.randn(b, 2 * g * 9, h, w, generator=gen) * 3
    mask = torch.rand(b, g * 9, h, w, generator=gen)
    return [t.to("cuda", dtype) for t in (x, offset, mask)]


def luma(frame: vs.VideoFrame) -> torch.Tensor:
    return torch.from_numpy(np.asarray(frame[0]).astype(np.float32))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def test_kernel_on_a_busy_stream_sees_that_streams_data():
    x, offset, mask = dcn_inputs(1, 16, 32, 48, 2)
    fresh = torch.randn_like(x)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # keep the stream busy: the copy below lands long after the launch call
        x.copy_(fresh)
        cols = sample_columns_cuda(x, offset, mask, *GEOMETRY)
    torch.cuda.synchronize()
    assert rel(cols, sample_columns_torch(fresh, offset, mask, *GEOMETRY)) <= 1e-5


def test_cupy_dcn_in_a_cuda_graph_replays_new_inputs():
    x, offset, mask = dcn_inputs(2, 16, 24, 40, 2)
    weight = torch.randn(16, 16, 3, 3, device="cuda") * 0.1
    bias = torch.randn(16, device="cuda")
    run = lambda: deform_conv2d(x, offset, weight, bias, 1, 1, 1, mask, backend="cupy")  # noqa: E731
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run()  # warm-up: compile, cuBLAS handles
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    for seed in (1, 2):
        nx, no, nm = dcn_inputs(2, 16, 24, 40, 2, seed=seed)
        x.copy_(nx), offset.copy_(no), mask.copy_(nm)
        graph.replay()
        eager = deform_conv2d(nx, no, weight, bias, 1, 1, 1, nm, backend="cupy")
        torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 8])
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
def test_dcn_on_strided_offset_slices_channels_last(groups, dtype, tol):
    """As in EDVR: offsets and mask are slices of conv_offset's output, inputs channels-last, B = 5."""
    torch.manual_seed(groups)
    pack = DCNv2Pack(64, 64, 3, padding=1, deformable_groups=groups).cuda()
    with torch.no_grad():
        pack.conv_offset.weight.normal_(0, 0.02)
        pack.conv_offset.bias.normal_(0, 1)
    pack = pack.to(dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(5, 64, 36, 60, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    feat = torch.randn_like(x)
    offset, logit = pack.offsets_and_logits(feat)
    assert not offset.is_contiguous() and not logit.is_contiguous()  # really the strided slices
    with torch.inference_mode():
        pack.backend = "torch"
        ref = pack(x, feat)
        for backend in ("cupy_v1", "cupy_v2", "cupy"):
            pack.backend = backend
            assert rel(pack(x, feat), ref) <= tol, backend


def test_one_launch_past_two_to_the_31_column_elements():
    b, c, h, w = 1, 240, 1000, 1000  # columns: 240 · 9 · 10⁶ = 2.16e9 > 2³¹
    assert b * c * 9 * h * w > 2 ** 31
    x, offset, mask = dcn_inputs(b, c, h, w, 1, dtype=torch.float16)
    cols = sample_columns_cuda(x, offset, mask, *GEOMETRY)
    last = sample_columns_torch(x[:, -1:], offset, mask, *GEOMETRY)  # the last channel's rows, past 2³¹
    assert rel(cols[:, -9:], last) <= 5e-3
    first = sample_columns_torch(x[:, :1], offset, mask, *GEOMETRY)
    assert rel(cols[:, :9], first) <= 5e-3


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_streams_with_eviction_and_scattered_requests(tiny_weights, cuda_graphs):
    threads = core.num_threads
    core.num_threads = 2  # a small cache (5 + 2·2 frames): streams use frames another stream computed
    try:
        clip = clip_from_frames(demo_frames(12, (64, 48))) * 5  # 60 frames
        one = [frame_tensor(f) for f in edvr(clip, weights=tiny_weights, device="cuda", precision="fp32").frames()]
        out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cuda", precision="fp32",
                                       num_streams=3, cuda_graphs=cuda_graphs)
        order = [(n * 37) % 60 for n in range(60)]
        futures = {n: out.get_frame_async(n) for n in order}
        for n in order:
            assert rel(frame_tensor(futures[n].result()), one[n]) <= 1e-5, n
        assert engine.frame_cache.stats.computes > 60  # evicted and recomputed: the record_stream path ran
    finally:
        core.num_threads = threads


def test_out_of_memory_under_concurrent_requests(tiny_weights):
    clip = core.resize.Bicubic(clip_from_frames(demo_frames(8)), 1920, 1088, format=vs.YUV420P8, matrix=1)
    with gpu_memory_cap(3 * 2 ** 29):  # 1.5 GiB
        out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cuda", precision="fp32")
        futures = [out.get_frame_async(n) for n in range(8)]
        got = [luma(f.result()) for f in futures]
    assert len(engine.tiles) > 1 and len(engine.relief_steps) <= 6  # each plan relieved once, not per request
    whole = edvr(clip, weights=tiny_weights, device="cuda", precision="fp32")
    for n in (0, 7):
        assert (luma(whole.get_frame(n)) - got[n]).abs().max() <= 1  # 8-bit codes


def test_steady_state_makes_no_host_synchronisation(tiny_weights):
    clip = clip_from_frames(demo_frames(10, (64, 48)))
    _, engine = edvr_with_engine(clip, weights=tiny_weights, device="cuda")
    frames = torch.stack([frame_tensor(f) for f in clip.frames()]).cuda()
    for n in range(3):  # warm-up: kernels compiled and checked, cache sized
        engine.restore(window_indices(n, 2, 0, 9, "reflection_circle"), n, lambda i: frames[i])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for n in range(3, 10):
            engine.restore(window_indices(n, 2, 0, 9, "reflection_circle"), n, lambda i: frames[i])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


def test_first_use_says_what_it_compiles(capfd):
    from edvr_vs import kernel_loader

    kernel_loader._function.cache_clear()
    kernel_loader._module.cache_clear()
    x, offset, mask = dcn_inputs(1, 8, 8, 8, 1)
    sample_columns_cuda(x, offset, mask, *GEOMETRY)
    major, minor = torch.cuda.get_device_capability()
    assert f"edvr: compiling deform_sample.cu for sm_{major}{minor} (cuda:0) with NVRTC" in capfd.readouterr().err


def test_autotune_times_both_kernels_once_per_shape(capfd):
    from edvr_vs import autotune

    x, offset, mask = dcn_inputs(5, 64, 28, 52, 8, dtype=torch.float16)  # a shape no other test times
    x = x.contiguous(memory_format=torch.channels_last)
    logit = torch.logit(mask.clamp(1e-3, 1 - 1e-3))
    weight = (torch.randn(64, 64, 3, 3, device="cuda") / 24).half()
    from edvr_vs.nn.dcn import deform_conv2d_logits

    with torch.inference_mode():
        ours = deform_conv2d_logits(x, offset, logit, weight, None, (1, 1), (1, 1), (1, 1), "cupy", True)
        again = deform_conv2d_logits(x, offset, logit, weight, None, (1, 1), (1, 1), (1, 1), "cupy", True)
        ref = deform_conv2d_logits(x.float(), offset.float(), logit.float(), weight.float(), None, (1, 1), (1, 1),
                                   (1, 1), "torch")
    (choice,) = [c for c in autotune.choices() if "(5,64,28,52)" in c["key"] and "float16" in c["key"]]
    assert set(choice["ms"]) == {"v2", "v1"} and choice["chosen"] in ("v2", "v1")
    assert capfd.readouterr().err.count("edvr: timed deform_conv2d") == 1
    assert torch.equal(ours, again) and rel(ours, ref) <= 5e-3
