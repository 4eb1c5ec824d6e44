"""Every bad argument to edvr() is a vs.Error naming the parameter, raised before any work."""

from __future__ import annotations

import pytest
import torch
import vapoursynth as vs

from edvr_vs import edvr

core = vs.core


@pytest.fixture(scope="module")
def clip():
    return core.std.BlankClip(format=vs.YUV420P8, width=32, height=24, length=5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(padding="mirror"), r"'padding' must be one of replicate, reflection, reflection_circle, circle, got 'mirror'"),
    (dict(device="gpu"), r"'device' must be 'cuda', 'cuda:N' or 'cpu', got 'gpu'"),
    (dict(device="cuda:x"), r"'device' must be"),
    (dict(device_index=-1), r"'device_index' must be an int ≥ 0, got -1"),
    (dict(precision="fp8"), r"'precision' must be one of fp32, fp16, bf16, got 'fp8'"),
    (dict(precision="fp16", device="cpu"), r"'precision' 'fp16' needs CUDA"),
    (dict(tile=(0, 64)), r"'tile' must be two positive multiples of 4 \(width, height\), got \(0, 64\)"),
    (dict(tile=(-4, 8)), r"'tile' must be two positive multiples of 4"),
    (dict(tile=(30, 32)), r"'tile' must be two positive multiples of 4"),
    (dict(tile=0), r"'tile' must be"),
    (dict(tile=(32, 32), tile_overlap=-4), r"'tile_overlap' must be two non-negative multiples of 4"),
    (dict(tile=(32, 32), tile_overlap=(6, 8)), r"'tile_overlap' must be two non-negative multiples of 4"),
    (dict(num_streams=0), r"'num_streams' must be an int ≥ 1, got 0"),
    (dict(num_streams=1.5), r"'num_streams' must be an int ≥ 1"),
    (dict(channels_last=1), r"'channels_last' must be True or False, got 1"),
    (dict(batch_align="no"), r"'batch_align' must be True or False \(or None\), got 'no'"),
    (dict(cuda_graphs=None), r"'cuda_graphs' must be True or False, got None"),
    (dict(pinned_memory=0), r"'pinned_memory' must be True or False, got 0"),
    (dict(check_offsets="on"), r"'check_offsets' must be True or False, got 'on'"),
    (dict(cuda_graphs=True), r"'cuda_graphs' needs CUDA; the device is 'cpu'"),
    (dict(cuda_graphs=True, check_offsets=True), r"'check_offsets' synchronises with the host, which a CUDA "
                                                  r"graph cannot: turn one of 'check_offsets' and 'cuda_graphs' off"),
    (dict(format=123456789), r"'format' must be a VapourSynth video format"),
    (dict(format=vs.GRAY8), r"'format' must be RGB or YUV, got Gray8"),
    (dict(matrix="bt999"), r"'matrix' must be one of 709, 601"),
    (dict(scene_change="yes"), r"'scene_change' must be True or False"),
    (dict(model="no_such_model"), r"'model' must be one of EDVR_T_x4_SR, EDVR_M_x4_SR_REDS_official, "),
    (dict(model="EDVR_M_x4_SR_REDS_official", weights="w.pth"), r"give either 'model' .* or 'weights' .*, not both"),
    (dict(weights=3), r"'weights' must be a checkpoint path, got int"),
    (dict(weights="/nonexistent/w.pth"), r"'weights': checkpoint '/nonexistent/w.pth' does not exist"),
])
def test_bad_arguments(clip, tiny_weights, kwargs, match):
    kwargs = {"weights": tiny_weights, "device": "cpu"} | kwargs
    if "model" in kwargs and kwargs.get("weights") is tiny_weights:
        del kwargs["weights"]
    with pytest.raises(vs.Error, match=r"^edvr: " + match):
        edvr(clip, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_gpu(clip, tiny_weights):
    with pytest.raises(vs.Error, match=r"edvr: 'device' is 'cuda' but CUDA is not available"):
        edvr(clip, weights=tiny_weights, device="cuda")


@pytest.mark.cuda
def test_cuda_index_out_of_range(clip, tiny_weights):
    with pytest.raises(vs.Error, match=r"CUDA device index 99 is out of range"):
        edvr(clip, weights=tiny_weights, device="cuda:99")


def test_not_a_clip(tiny_weights):
    with pytest.raises(vs.Error, match=r"edvr: 'clip' must be a video clip \(vs.VideoNode\), got str"):
        edvr("clip.mkv", weights=tiny_weights)


def test_gray_clip(tiny_weights):
    with pytest.raises(vs.Error, match=r"edvr: 'clip' must be RGB or YUV, got Gray8"):
        edvr(core.std.BlankClip(format=vs.GRAY8), weights=tiny_weights, device="cpu")


def test_variable_format(tiny_weights):
    a = core.std.BlankClip(format=vs.YUV420P8, length=2)
    b = core.std.BlankClip(format=vs.RGB24, length=2)
    with pytest.raises(vs.Error, match=r"edvr: 'clip' has a variable format"):
        edvr(core.std.Splice([a, b], mismatch=True), weights=tiny_weights, device="cpu")


def test_variable_resolution(tiny_weights):
    a = core.std.BlankClip(format=vs.YUV420P8, width=32, height=32, length=2)
    b = core.std.BlankClip(format=vs.YUV420P8, width=64, height=32, length=2)
    with pytest.raises(vs.Error, match=r"edvr: 'clip' has a variable resolution"):
        edvr(core.std.Splice([a, b], mismatch=True), weights=tiny_weights, device="cpu")


def test_no_default_model_yet_or_default_works(clip):
    from edvr_vs import zoo

    if zoo.default_model() is None:
        with pytest.raises(vs.Error, match="no default model is shipped"):
            edvr(clip, device="cpu")
    else:
        assert edvr(clip, device="cpu").width == 128
