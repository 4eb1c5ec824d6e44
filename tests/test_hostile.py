"""Hostile inputs, faults and long runs: clear errors or correct frames, never a crash, hang or leak."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import vapoursynth as vs

from edvr_vs import edvr
from edvr_vs.filter import edvr_with_engine
from edvr_vs.nn.edvr import EDVR
from edvr_vs.frame_io import clip_from_frames, frame_tensor
from edvr_vs.os_support import peak_rss_mib
from tests.conftest import demo_frames, gpu_memory_cap, randomize

core = vs.core


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/edvr_vs_payload_ran",))


def bad_weight_files(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    data = good.read_bytes()
    files = {
        "missing": (tmp / "missing.pth", "does not exist"),
        "empty": (tmp / "empty.pth", "empty"),
        "truncated": (tmp / "truncated.pth", "truncated or corrupt"),
        "random": (tmp / "random.pth", "truncated or corrupt|not a PyTorch checkpoint"),
        "pickle": (tmp / "pickle.pth", "could run code|not a PyTorch checkpoint"),
        "other_net": (tmp / "other_net.pth", "does not hold EDVR weights"),
        "wrong_shape": (tmp / "wrong_shape.pth", "tensor shapes differ"),
        "html": (tmp / "html.pth", "HTML page"),
    }
    files["empty"][0].write_bytes(b"")
    files["truncated"][0].write_bytes(data[: len(data) // 2])
    files["random"][0].write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    files["pickle"][0].write_bytes(pickle.dumps({"params": Payload()}))
    torch.save({"params": torch.nn.Linear(3, 3).state_dict()}, files["other_net"][0])
    sd = torch.load(good, weights_only=True)["params"]
    sd["upconv1.weight"] = torch.zeros(1, 1, 3, 3)
    torch.save({"params": sd}, files["wrong_shape"][0])
    files["html"][0].write_bytes(b"<!DOCTYPE html><html><title>Error 404</title></html>")
    return files


def test_bad_weight_files_through_the_filter(tmp_path, tiny_weights):
    Path("/tmp/edvr_vs_payload_ran").unlink(missing_ok=True)
    clip = core.std.BlankClip(format=vs.YUV420P8, width=16, height=16, length=3)
    for name, (path, match) in bad_weight_files(tmp_path, tiny_weights).items():
        with pytest.raises(vs.Error, match=rf"^edvr: 'weights': checkpoint '.*{path.name}'.*({match})"):
            edvr(clip, weights=path, device="cpu")
    assert not Path("/tmp/edvr_vs_payload_ran").exists()


def test_variable_frame_rate_keeps_durations(tiny_weights):
    a = core.std.BlankClip(format=vs.RGBS, width=8, height=8, length=3, fpsnum=24, fpsden=1)
    b = core.std.BlankClip(format=vs.RGBS, width=8, height=8, length=3, fpsnum=30, fpsden=1)
    vfr = core.std.Splice([a, b], mismatch=True)
    out = edvr(vfr, weights=tiny_weights, device="cpu")
    assert (out.fps.numerator, out.fps.denominator) == (0, 1) and out.num_frames == 6
    assert out.get_frame(1).props["_DurationDen"] == 24 and out.get_frame(4).props["_DurationDen"] == 30


def test_odd_420_is_refused_by_vapoursynth_itself():
    with pytest.raises(vs.Error, match="invalid width"):
        core.std.BlankClip(format=vs.YUV420P8, width=7, height=5)


def failing_at(clip: vs.VideoNode, bad: int) -> vs.VideoNode:
    def maybe_fail(n, f):
        if n == bad:
            raise ValueError(f"upstream decoder broke on frame {n}")
        return f
    return core.std.ModifyFrame(clip, clip, maybe_fail)


def test_upstream_error_fails_only_windows_that_need_it(tiny_weights):
    frames = demo_frames(12, (16, 16))
    out = edvr(failing_at(clip_from_frames(frames), 6), weights=tiny_weights, device="cpu", padding="replicate")
    for n in (4, 5, 6, 7, 8):
        with pytest.raises(vs.Error, match="upstream decoder broke on frame 6"):
            out.get_frame(n)
    clean = edvr(clip_from_frames(frames), weights=tiny_weights, device="cpu", padding="replicate")
    for n in (0, 3, 9, 11):  # windows without frame 6 work, before and after the failures
        assert torch.equal(frame_tensor(out.get_frame(n)), frame_tensor(clean.get_frame(n)))


def test_nan_frame_does_not_poison_other_windows(tiny_weights):
    frames = demo_frames(12, (16, 16))
    frames[6, :, 3:5, 3:5] = float("nan")
    frames[6, 0, 0, 0] = float("inf")
    out, engine = edvr_with_engine(clip_from_frames(frames), weights=tiny_weights, device="cpu",
                                   padding="replicate")
    for n in range(12):
        f = frame_tensor(out.get_frame(n))
        if abs(n - 6) <= 2:
            assert not torch.isfinite(f).all(), n
        else:
            assert torch.isfinite(f).all(), n
    assert engine.frame_cache.stats.computes == 12


def test_two_instances_stay_independent(tiny_weights, tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"params": randomize(EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1), 99)
                .state_dict()}, other)
    clip = clip_from_frames(demo_frames(5, (16, 16)))
    a, b = edvr(clip, weights=tiny_weights, device="cpu"), edvr(clip, weights=other, device="cpu")
    a_alone = frame_tensor(edvr(clip, weights=tiny_weights, device="cpu").get_frame(2))
    fa, fb = frame_tensor(a.get_frame(2)), frame_tensor(b.get_frame(2))
    assert torch.equal(fa, a_alone) and not torch.equal(fa, fb)


def test_long_run_memory_flat_and_each_frame_once(tiny_weights):
    frames = demo_frames(1, (8, 8))
    clip = clip_from_frames(frames)
    clip = core.std.Loop(clip, 2000)
    clip = core.std.Expr(clip, "x 0.9 *")  # a filter in between, as in a real script
    out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cpu")
    rss = []
    for n, f in enumerate(out.frames(prefetch=4)):
        if n % 250 == 0:
            rss.append(peak_rss_mib())
    assert n == 1999
    assert engine.frame_cache.stats.computes == 2000
    assert len(engine.frame_cache) <= engine.frame_cache.capacity
    growth_mb = rss[-1] - rss[1]  # after warm-up (the first 250 frames)
    assert growth_mb < 64, rss  # measured: 0.7 MB from frame 250 to 2,000


def test_concurrent_random_requests_match_sequential(tiny_weights):
    frames = demo_frames(21, (8, 8))
    idx = [i % 21 for i in range(500)]
    clip = core.std.Splice([clip_from_frames(frames[i:i + 1]) for i in range(21)] * 24)[:500]
    sequential = edvr(clip, weights=tiny_weights, device="cpu")
    expected = [frame_tensor(sequential.get_frame(n)) for n in range(500)]
    node = edvr(clip, weights=tiny_weights, device="cpu")
    order = list(range(500))
    random.Random(7).shuffle(order)
    got = {}
    for start in range(0, 500, 8):  # 8 requests in flight at a time
        batch = order[start:start + 8]
        futures = [node.get_frame_async(n) for n in batch]
        for n, fut in zip(batch, futures):
            got[n] = frame_tensor(fut.result())
    assert all(torch.equal(got[n], expected[n]) for n in range(500))
    assert len(idx) == 500


def group_members(pgid: int) -> list[int]:
    """Processes (zombies included) whose process group is ``pgid``, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            members.append(int(stat.parent.name))
    return members


@pytest.mark.linux(reason="a bash pipeline signalled as a process group, read through /proc")
def test_ctrl_c_during_vspipe_into_ffmpeg(tiny_weights, tmp_path):
    from edvr_vs.media import ffmpeg_exe

    script = tmp_path / "long.vpy"
    script.write_text(
        "import vapoursynth as vs\nimport edvr_vs\n"
        "clip = vs.core.std.BlankClip(format=vs.YUV420P8, width=64, height=48, length=100000)\n"
        f"edvr_vs.edvr(clip, weights={str(tiny_weights)!r}, device='cpu').set_output()\n")
    vspipe = Path(sys.executable).with_name("vspipe")
    pipeline = f"'{vspipe}' -c y4m '{script}' - | '{ffmpeg_exe()}' -v error -f yuv4mpegpipe -i - -f null -"
    proc = subprocess.Popen(["bash", "-c", pipeline], start_new_session=True, stderr=subprocess.PIPE)
    time.sleep(8)  # well into the stream
    assert proc.poll() is None, proc.stderr.read()
    assert len(group_members(proc.pid)) >= 3  # bash, vspipe, ffmpeg
    t = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends to the foreground group
    proc.wait(timeout=10)
    elapsed = time.monotonic() - t
    time.sleep(0.2)
    assert elapsed < 2, elapsed
    assert group_members(proc.pid) == []  # no process of the pipeline is left, zombie or not


@pytest.mark.cuda
def test_cuda_out_of_memory_falls_back_to_tiles(tiny_weights, capfd):
    """GPU: with too little memory for whole frames, the filter tiles by itself and says so once."""
    clip = core.std.BlankClip(format=vs.YUV420P8, width=1920, height=1088, length=5, color=[100, 120, 140])
    with gpu_memory_cap(3 * 2 ** 29):  # 1.5 GiB
        out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cuda", precision="fp32")
        frames = [out.get_frame(n) for n in range(3)]
    assert len(engine.tiles) > 1
    assert capfd.readouterr().err.count("CUDA ran out of memory") == 1
    assert all(f.width == 7680 for f in frames)


@pytest.mark.cuda
def test_cuda_streams_give_the_same_frames(tiny_weights):
    clip = clip_from_frames(demo_frames(8, (48, 32)))
    one = edvr(clip, weights=tiny_weights, device="cuda", precision="fp32")
    many = edvr(clip, weights=tiny_weights, device="cuda", precision="fp32", num_streams=3)
    futures = [many.get_frame_async(n) for n in range(8)]
    for n, fut in enumerate(futures):
        assert torch.allclose(frame_tensor(fut.result()), frame_tensor(one.get_frame(n)), atol=1e-5)
