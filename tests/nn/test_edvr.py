"""EDVR: BasicSR key names, every official configuration against the functional oracle."""

from __future__ import annotations

import pytest
import torch

import edvr_vs.nn.dcn as dcn
from edvr_vs.nn.edvr import EDVR, WindowInputs
from tests.conftest import OFFICIAL_CONFIGS, randomize
from edvr_vs.nn.basicsr_reference import Ref


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("name", list(OFFICIAL_CONFIGS))
def test_official_config_matches_basicsr_forward(name):
    kwargs = OFFICIAL_CONFIGS[name]
    torch.manual_seed(1)
    model = randomize(EDVR(**kwargs), seed=2)
    t = kwargs["num_frame"]
    m = 16 if kwargs.get("hr_in") else 4
    x = torch.rand(1, t, 3, 2 * m, 3 * m, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(x)
        ref = Ref(model.state_dict())(x)
    scale = 1 if kwargs.get("hr_in") else 4
    assert ours.shape == (1, 3, x.shape[-2] * scale, x.shape[-1] * scale)
    assert max_rel_diff(ours, ref) <= 1e-4
    # The network really does something beyond the bilinear base.
    assert (ref - torch.nn.functional.interpolate(x[:, t // 2], scale_factor=scale, mode="bilinear")).abs().max() > 1e-2


def test_basicsr_key_names_and_sizes():
    sd = EDVR().state_dict()  # EDVR-M defaults
    assert len(sd) == 144
    expected_shapes = {
        "conv_first.weight": (64, 3, 3, 3),
        "feature_extraction.4.conv2.bias": (64,),
        "conv_l3_2.weight": (64, 64, 3, 3),
        "pcd_align.offset_conv1.l3.weight": (64, 128, 3, 3),
        "pcd_align.offset_conv2.l3.weight": (64, 64, 3, 3),
        "pcd_align.offset_conv2.l2.weight": (64, 128, 3, 3),
        "pcd_align.offset_conv3.l1.bias": (64,),
        "pcd_align.dcn_pack.l2.weight": (64, 64, 3, 3),
        "pcd_align.dcn_pack.l1.conv_offset.weight": (216, 64, 3, 3),
        "pcd_align.feat_conv.l1.weight": (64, 128, 3, 3),
        "pcd_align.cas_offset_conv1.weight": (64, 128, 3, 3),
        "pcd_align.cas_dcnpack.conv_offset.bias": (216,),
        "fusion.temporal_attn1.weight": (64, 64, 3, 3),
        "fusion.feat_fusion.weight": (64, 320, 1, 1),
        "fusion.spatial_attn1.weight": (64, 320, 1, 1),
        "fusion.spatial_attn_l2.weight": (64, 128, 3, 3),
        "fusion.spatial_attn_add2.weight": (64, 64, 1, 1),
        "reconstruction.9.conv1.weight": (64, 64, 3, 3),
        "upconv1.weight": (256, 64, 3, 3),
        "upconv2.weight": (256, 64, 3, 3),
        "conv_hr.weight": (64, 64, 3, 3),
        "conv_last.weight": (3, 64, 3, 3),
    }
    for key, shape in expected_shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "pcd_align.offset_conv3.l3.weight" not in sd and "pcd_align.feat_conv.l3.weight" not in sd
    deblur = EDVR(num_feat=128, num_reconstruct_block=40, with_predeblur=True, hr_in=True).state_dict()
    for key in ("predeblur.conv_first.weight", "predeblur.stride_conv_hr1.weight", "predeblur.stride_conv_hr2.bias",
                "predeblur.stride_conv_l3.weight", "predeblur.resblock_l3.conv1.weight",
                "predeblur.resblock_l2_2.conv2.weight", "predeblur.resblock_l1.4.conv1.weight", "conv_1x1.weight"):
        assert key in deblur, key
    assert "conv_first.weight" not in deblur
    wotsa = EDVR(with_tsa=False).state_dict()
    assert tuple(wotsa["fusion.weight"].shape) == (64, 320, 1, 1)


def test_center_frame_default_is_middle():
    assert EDVR(num_frame=7).config.center == 3
    assert EDVR(num_frame=5).config.center == 2
    assert EDVR(num_frame=1).config.center == 0
    assert EDVR(num_frame=7, center_frame_idx=2).config.center == 2


@pytest.mark.parametrize("num_frame", [1, 3, 9])
def test_any_odd_frame_count(num_frame):
    model = randomize(EDVR(num_feat=16, num_frame=num_frame, num_extract_block=1, num_reconstruct_block=1))
    x = torch.rand(2, num_frame, 3, 8, 12)
    with torch.no_grad():
        ours = model(x)
        ref = Ref(model.state_dict())(x)
    assert ours.shape == (2, 3, 32, 48)
    assert max_rel_diff(ours, ref) <= 1e-4


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_frame=4), "odd"),
    (dict(num_frame=0), "positive"),
    (dict(num_frame=5, center_frame_idx=5), "center_frame_idx"),
    (dict(num_feat=60), "multiple"),
    (dict(hr_in=True), "with_predeblur"),
    (dict(num_reconstruct_block=-1), "num_reconstruct_block"),
])
def test_invalid_configs_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EDVR(**kwargs)


def test_forward_rejects_unpadded_sizes_and_wrong_frame_count():
    model = EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 5, 3, 10, 12))
    with pytest.raises(ValueError, match="expected 5 frames"):
        model(torch.rand(1, 3, 3, 8, 8))


def test_offset_halves_are_the_same_linear_map():
    model = randomize(EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1)).double()
    frames = torch.rand(3, 3, 16, 20, dtype=torch.float64)
    with torch.no_grad():
        _, feats, as_nbr, as_ref = model.frame_features(frames)
        for lv in range(3):
            conv = model.pcd_align.offset_conv1[f"l{lv + 1}"]
            fused = conv(torch.cat([feats[lv][:1].expand(3, -1, -1, -1), feats[lv][1:2].expand(3, -1, -1, -1)], 1))
            assert torch.allclose(as_nbr[lv][:1] + as_ref[lv][1:2], fused[:1], atol=1e-12)


def test_forward_is_frame_features_then_restore_window():
    """A batch of windows through forward = each window from cached per-frame parts, batched or not."""
    model = randomize(EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1), seed=3).double()
    x = torch.rand(2, 5, 3, 16, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        batched = model(x)
        for b in range(2):
            frames = [model.frame_features(x[b, i:i + 1]) for i in range(5)]
            inputs = WindowInputs.gather(frames, frames[2])
            for batch_align in (True, False):
                one = model.restore_window(inputs, batch_align=batch_align)
                torch.testing.assert_close(one, batched[b:b + 1], rtol=1e-10, atol=1e-10)
            assert torch.equal(model.restore_frames(frames, frames[2]), model.restore_window(inputs, batch_align=False))


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_fused_convolutions_give_the_same_frames_in_fp32(memory_format):
    """The CPU's fused convolutions (activation and residual add as oneDNN post-ops) give the plain ops'
    frames in fp32 to within an ulp, in both layouts, for every architecture part: extraction, PCD, TSA,
    reconstruction, pre-deblur. (Bitwise on some CPUs; on others oneDNN picks another kernel for some
    fused shapes: 6e-8 on an AVX-512 AMD EPYC.) A wrong activation or a lost add is far outside this."""
    for kwargs in ({}, {"with_predeblur": True}, {"with_tsa": False}):
        model = randomize(EDVR(num_feat=16, num_extract_block=2, num_reconstruct_block=2, **kwargs), seed=4).eval()
        model = model.to(memory_format=memory_format)
        x = torch.rand(1, 5, 3, 16, 20, generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            plain = model(x)
            model.set_fused_convs(True)
            fused = model(x)
        assert (plain - fused).abs().max() <= 1e-6 * plain.abs().max(), kwargs


def test_real_frames_7_frame_model(vimeo_frames, monkeypatch):
    """The 7 real Vimeo-90K frames: finite output, and both DCN backends agree on them."""
    model = randomize(EDVR(num_feat=32, num_frame=7, num_extract_block=2, num_reconstruct_block=2), seed=5)
    x = vimeo_frames.unsqueeze(0)
    with torch.no_grad():
        ours = model(x)
        assert ours.shape == (1, 3, 256, 448)
        assert torch.isfinite(ours).all()

        import torchvision

        def tv(x, offset, weight, bias, stride, padding, dilation, mask, backend="auto"):
            return torchvision.ops.deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)

        monkeypatch.setattr(dcn, "deform_conv2d", tv)
        theirs = model(x)
    assert (ours - theirs).abs().max().item() <= 1e-5
