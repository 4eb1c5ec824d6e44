"""The kernels' self-check and fallback, on the CPU: the checks run the kernels' CPU builds (the same
sources, through tests/kernels/cuda_host.h) against their references, and injected failures (a kernel
that raises, one that returns wrong values) make the engine and the frame I/O take the reference path."""

from __future__ import annotations

import pytest
import torch
import vapoursynth as vs

from edvr_vs import selfcheck
from edvr_vs.colour import Colour
from edvr_vs.convert import PlaneFormat
from edvr_vs.engine import Engine
from edvr_vs.frame_io import KernelIO, ZimgIO, frame_io_for
from edvr_vs.nn.dcn import DCNv2Pack
from edvr_vs.nn.edvr import EDVR
from edvr_vs.selfcheck import KernelCheck, verify
from tests.kernels.harness import build
from tests.kernels.test_convert import kernel_from_rgb, kernel_to_rgb
from tests.kernels.test_deform_sample import emulated_columns

core = vs.core
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch):
    monkeypatch.setattr(selfcheck, "_RESULTS", {})


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    out = tmp_path_factory.mktemp("sc")
    return build("emulate_deform_sample", out), build("emulate_convert", out)


def test_verify_judges_exceptions_and_differences():
    want = torch.linspace(-2, 2, 50)
    good = verify("k", CPU, "fp32", lambda: want + 1e-7, lambda: want, 1e-5, "torch")
    assert good.ok and good.path == "cupy" and good.reason == "" and good.max_error <= 1e-6 and good.ms >= 0

    def broken() -> torch.Tensor:
        raise RuntimeError("NVRTC failed for sm_90:\nerror: expected ';'")

    failed = verify("k", CPU, "fp32", broken, lambda: want, 1e-5, "torch")
    assert not failed.ok and failed.path == "torch" and failed.reason == "RuntimeError: NVRTC failed for sm_90:"
    wrong = verify("k", CPU, "fp32", lambda: want.flip(0), lambda: want, 1e-5, "torch")
    assert not wrong.ok and wrong.reason == "disagrees with its reference by 2 (tolerance 1e-05)"
    nan = verify("k", CPU, "fp32", lambda: want * float("nan"), lambda: want, 1e-5, "torch")
    assert not nan.ok and nan.max_error == float("inf")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_the_sampling_kernel_passes_its_check(libs, monkeypatch, dtype):
    monkeypatch.setattr(selfcheck, "sample_columns_cuda", lambda x, o, m, k, s, p, d: emulated_columns(
        libs[0], x, o, m, k, s, p, d))
    check = selfcheck.check_deform_sample(CPU, dtype)
    assert check.ok, check
    assert check.kernel == "deform_sample" and check.dtype == selfcheck.DTYPE_NAMES[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_the_v2_sampling_kernel_passes_its_check(monkeypatch, tmp_path, dtype):
    from tests.kernels.test_deform_sample_v2 import emulated_pixel_columns

    lib = build("emulate_deform_sample_v2", tmp_path)
    monkeypatch.setattr(selfcheck, "sample_pixel_columns_cuda", lambda x, o, m, k, s, p, d: emulated_pixel_columns(
        lib, x, o, m, k, s, p, d))
    check = selfcheck.check_deform_sample_v2(CPU, dtype)
    assert check.ok, check
    assert check.kernel == "deform_sample_v2" and check.dtype == selfcheck.DTYPE_NAMES[dtype]
    monkeypatch.setattr(selfcheck, "sample_pixel_columns_cuda", lambda x, o, m, k, s, p, d: emulated_pixel_columns(
        lib, x, o, -m, k, s, p, d))  # a kernel that forgot a sign in the sigmoid
    monkeypatch.setattr(selfcheck, "_RESULTS", {})
    wrong = selfcheck.check_deform_sample_v2(CPU, dtype)
    assert not wrong.ok and wrong.path == "deform_sample"


def test_a_wrong_sampling_kernel_fails_its_check_once(libs, monkeypatch, capfd):
    def off_by_a_row(x, o, m, k, s, p, d):
        return emulated_columns(libs[0], x.roll(1, dims=2), o, m, k, s, p, d)

    monkeypatch.setattr(selfcheck, "sample_columns_cuda", off_by_a_row)
    first = selfcheck.check_deform_sample(CPU, torch.float32)
    again = selfcheck.check_deform_sample(CPU, torch.float32)
    assert again is first and not first.ok and first.path == "torch"
    assert first.reason.startswith("disagrees with its reference")
    err = capfd.readouterr().err
    assert err.count("edvr: the CUDA kernel deform_sample on cpu (fp32) failed its self-check") == 1
    assert "using torch instead" in err


@pytest.mark.parametrize("fmt,colour", [(vs.YUV420P8, Colour(1, False, 0)), (vs.YUV422P10, Colour(6, True, 1)),
                                        (vs.YUV444PS, Colour(9, False, 0)), (vs.RGB24, Colour(6, False, 0)),
                                        (vs.YUV420P16, Colour(5, False, 1)), (vs.YUV411P8, Colour(1, False, 0)),
                                        (vs.YUV444PH, Colour(1, True, 0))])
def test_the_conversion_kernels_pass_their_checks_against_zimg(libs, monkeypatch, fmt, colour):
    def to_rgb(planes, pf, dtype):
        return torch.from_numpy(kernel_to_rgb(libs[1], [p.numpy() for p in planes], pf))

    def to_planes(rgb, pf):
        return [torch.from_numpy(p) for p in kernel_from_rgb(libs[1], rgb.float().numpy(), pf)]

    monkeypatch.setattr(selfcheck, "planes_to_rgb", to_rgb)
    monkeypatch.setattr(selfcheck, "rgb_to_planes", to_planes)
    fmt = core.get_video_format(fmt)
    to, back = (selfcheck.check_planes_to_rgb(fmt, colour, CPU, torch.float32),
                selfcheck.check_rgb_to_planes(fmt, colour, CPU, torch.float32))
    assert to.ok, to
    if fmt.subsampling_w == 2:
        # Found by this check: the kernel's 4:1 horizontal chroma downsampling is not zimg's (it is off by
        # tens of codes), so on CUDA 4:1:1 output goes through zimg instead.
        assert not back.ok and back.max_error > 10 and back.path == "zimg"
    else:
        assert back.ok, back
    # and a kernel with the wrong matrix is caught
    monkeypatch.setattr(selfcheck, "_RESULTS", {})
    if fmt.color_family == vs.YUV:
        wrong = Colour(7 if colour.matrix != 7 else 1, colour.full_range, colour.chromaloc)
        monkeypatch.setattr(selfcheck, "planes_to_rgb", lambda planes, pf, dtype: to_rgb(
            planes, PlaneFormat.for_colour(fmt, wrong), dtype))
        assert not selfcheck.check_planes_to_rgb(fmt, colour, CPU, torch.float32).ok


def test_a_check_that_cannot_run_fails_instead_of_raising():
    """On a device where the kernel cannot launch (here: the CPU), the check reports it; building the
    reference for any format (4:1:1 included) never escapes the check."""
    fmt = core.get_video_format(vs.YUV411P8)
    for check in (selfcheck.check_planes_to_rgb(fmt, Colour(1, False, 0), CPU, torch.float16),
                  selfcheck.check_rgb_to_planes(fmt, Colour(1, False, 0), CPU, torch.float16)):
        assert not check.ok and check.path == "zimg"
        assert check.reason == "ValueError: kernel argument 0: on cpu, the launch is on cuda:0"


def failing(kernel: str) -> KernelCheck:
    return KernelCheck(kernel, "cuda:0", "fp16", False, "torch" if kernel.startswith("deform_sample") else "zimg",
                       "RuntimeError: launch failed", None, 1e-3, 1.0)


def test_engine_takes_the_other_kernel_or_torch_when_a_sampling_kernel_fails():
    engine = Engine(EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1), CPU, "fp32", width=16,
                    height=16, tile=None, tile_overlap=(0, 0), cache_frames=5)
    packs = [m for m in engine.model.modules() if isinstance(m, DCNv2Pack)]
    engine.use_kernel_check(failing("deform_sample_v2"))
    assert {m.backend for m in packs} == {"cupy_v1"}


def test_engine_takes_torchs_sampling_when_the_kernel_fails():
    engine = Engine(EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1), CPU, "fp32", width=16,
                    height=16, tile=None, tile_overlap=(0, 0), cache_frames=5)
    packs = [m for m in engine.model.modules() if isinstance(m, DCNv2Pack)]
    assert engine.kernel_checks == [] and {m.backend for m in packs} == {"auto"}  # CPU: no kernel to check
    engine.use_kernel_check(failing("planes_to_rgb"))
    assert {m.backend for m in packs} == {"auto"}
    engine.use_kernel_check(failing("deform_sample"))
    assert {m.backend for m in packs} == {"cupy_v2"}  # v1 failed: the v2 kernel alone, no timing of v1
    engine.use_kernel_check(failing("deform_sample_v2"))
    assert {m.backend for m in packs} == {"torch"} and len(engine.kernel_checks) == 3


def test_frame_io_falls_back_to_zimg_when_a_conversion_kernel_fails(monkeypatch):
    clip = core.std.BlankClip(format=vs.YUV420P8, width=32, height=16, length=3)
    fmt = clip.format
    passed = KernelCheck("planes_to_rgb", "cuda:0", "x", True, "cupy", "", 0.0, 1e-3, 1.0)
    monkeypatch.setattr("edvr_vs.frame_io.check_planes_to_rgb", lambda *a: passed)
    monkeypatch.setattr("edvr_vs.frame_io.check_rgb_to_planes", lambda *a: passed)
    io, checks = frame_io_for(clip, fmt=fmt, matrix=None, device=torch.device("cuda", 0), dtype=torch.float16,
                              pinned_memory=True)
    assert isinstance(io, KernelIO) and checks == [passed, passed]
    monkeypatch.setattr("edvr_vs.frame_io.check_rgb_to_planes", lambda *a: failing("rgb_to_planes"))
    io, checks = frame_io_for(clip, fmt=fmt, matrix=None, device=torch.device("cuda", 0), dtype=torch.float16,
                              pinned_memory=True)
    assert isinstance(io, ZimgIO) and not checks[1].ok
    io, checks = frame_io_for(clip, fmt=fmt, matrix=None, device=CPU, dtype=torch.float32, pinned_memory=True)
    assert isinstance(io, ZimgIO) and checks == []  # the CPU converts with zimg: nothing to check


@pytest.mark.cuda
def test_broken_kernel_source_on_cuda_falls_back_with_the_same_frames(tiny_weights, monkeypatch, capfd):
    from edvr_vs import kernel_loader
    from edvr_vs.filter import edvr, edvr_with_engine
    from edvr_vs.frame_io import clip_from_frames, frame_tensor
    from tests.conftest import demo_frames

    clip = clip_from_frames(demo_frames(5, (48, 32)))
    want = frame_tensor(edvr(clip, weights=tiny_weights, device="cuda", precision="fp32").get_frame(2))
    source = kernel_loader.read_source("deform_sample.cu")
    monkeypatch.setattr(kernel_loader, "read_source", lambda name: source.replace("extern", "extrn", 1)
                        if name == "deform_sample.cu" else kernel_loader.read_source.__wrapped__(name))
    kernel_loader._function.cache_clear()
    try:
        out, engine = edvr_with_engine(clip, weights=tiny_weights, device="cuda", precision="fp32")
        got = frame_tensor(out.get_frame(2))
    finally:
        kernel_loader._function.cache_clear()
    (dcn,) = [c for c in engine.kernel_checks if c.kernel == "deform_sample"]
    assert not dcn.ok and dcn.path == "torch" and "KernelCompileError" in dcn.reason
    assert "failed its self-check" in capfd.readouterr().err
    assert (got - want).abs().max() <= 1e-4


@pytest.mark.cuda
@pytest.mark.parametrize("fmt", [vs.YUV420P8, vs.YUV420P10, vs.YUV422P16, vs.YUV444PS, vs.YUV444PH, vs.RGB24, vs.RGBS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_conversion_kernels_pass_their_checks_on_the_gpu(fmt, dtype):
    fmt = core.get_video_format(fmt)
    cuda = torch.device("cuda")
    for check in (selfcheck.check_planes_to_rgb(fmt, Colour(1, False, 1), cuda, dtype),
                  selfcheck.check_rgb_to_planes(fmt, Colour(6, True, 0), cuda, dtype)):
        assert check.ok, check


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_sampling_kernel_passes_its_check_on_the_gpu(dtype):
    check = selfcheck.check_deform_sample(torch.device("cuda"), dtype)
    assert check.ok, check
