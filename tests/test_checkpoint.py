"""load_model: every layout, architecture inference, and every bad file named clearly."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch

from edvr_vs import CheckpointError, load_model
from edvr_vs.checkpoint import read_checkpoint
from edvr_vs.nn.edvr import EDVR
from tests.conftest import OFFICIAL_CONFIGS, randomize


# BasicSR → other layouts, written out by hand from those projects' module names.
def to_mmagic(sd: dict) -> dict:
    conv_module = re.compile(
        r"^(conv_l[23]_[12]|pcd_align\.(offset_conv\d\.l\d|feat_conv\.l\d|cas_offset_conv\d)"
        r"|fusion\.(feat_fusion|spatial_attn[1-4]|spatial_attn_l\d|spatial_attn_add1))\.(weight|bias)$")
    out = {}
    for k, v in sd.items():
        m = conv_module.match(k)
        if m:
            k = f"{m[1]}.conv.{m[4]}"
        k = re.sub(r"^conv_l(\d)_(\d)", r"feat_l\1_conv\2", k)
        k = k.replace("pcd_align.", "pcd_alignment.")
        k = re.sub(r"^upconv(\d)\.", r"upsample\1.upsample_conv.", k)
        out["generator." + k] = v
    return {"meta": {"epoch": 1}, "state_dict": out}


def to_original(sd: dict) -> dict:
    table = [
        (r"^fusion\.temporal_attn1\.", "tsa_fusion.tAtt_2."),
        (r"^fusion\.temporal_attn2\.", "tsa_fusion.tAtt_1."),
        (r"^fusion\.feat_fusion\.", "tsa_fusion.fea_fusion."),
        (r"^fusion\.spatial_attn_add(\d)\.", r"tsa_fusion.sAtt_add_\1."),
        (r"^fusion\.spatial_attn_l(\d)\.", r"tsa_fusion.sAtt_L\1."),
        (r"^fusion\.spatial_attn(\d)\.", r"tsa_fusion.sAtt_\1."),
        (r"^fusion\.", "tsa_fusion."),
        (r"^predeblur\.conv_first\.", "pre_deblur.conv_first_1."),
        (r"^predeblur\.stride_conv_hr(\d)\.", lambda m: f"pre_deblur.conv_first_{int(m[1]) + 1}."),
        (r"^predeblur\.stride_conv_l(\d)\.", r"pre_deblur.deblur_L\1_conv."),
        (r"^predeblur\.resblock_l3\.", "pre_deblur.RB_L3_1."),
        (r"^predeblur\.resblock_l2_(\d)\.", r"pre_deblur.RB_L2_\1."),
        (r"^predeblur\.resblock_l1\.(\d)\.", lambda m: f"pre_deblur.RB_L1_{int(m[1]) + 1}."),
        (r"^conv_l(\d)_(\d)\.", r"fea_L\1_conv\2."),
        (r"^pcd_align\.offset_conv(\d)\.l(\d)\.", r"pcd_align.L\2_offset_conv\1."),
        (r"^pcd_align\.dcn_pack\.l(\d)\.", r"pcd_align.L\1_dcnpack."),
        (r"^pcd_align\.feat_conv\.l(\d)\.", r"pcd_align.L\1_fea_conv."),
        (r"\.conv_offset\.", ".conv_offset_mask."),
        (r"^reconstruction\.", "recon_trunk."),
        (r"^conv_hr\.", "HRconv."),
    ]
    out = {}
    for k, v in sd.items():
        for pattern, repl in table:
            k = re.sub(pattern, repl, k)
        out["module." + k] = v
    return out


def small(**kw) -> EDVR:
    base = dict(num_feat=16, num_extract_block=2, num_reconstruct_block=2)
    return randomize(EDVR(**(base | kw)), seed=7)


def same_outputs(a: EDVR, b: EDVR) -> bool:
    t = a.config.num_frame
    size = 32 if a.config.hr_in else 8
    x = torch.rand(1, t, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a(x), b(x))


LAYOUTS = {
    "basicsr_params": lambda sd: {"params": sd},
    "basicsr_bare": lambda sd: sd,
    "mmagic": to_mmagic,
    "original": to_original,
}


ARCHS = {"M": dict(), "woTSA": dict(with_tsa=False), "7frames": dict(num_frame=7),
         "predeblur": dict(with_predeblur=True), "hr_in": dict(with_predeblur=True, hr_in=True)}
# mmagic has no pre-deblur EDVR, so those two pairs do not exist.
PAIRS = [(layout, arch) for layout in LAYOUTS for arch in ARCHS
         if not (layout == "mmagic" and ARCHS[arch].get("with_predeblur"))]


@pytest.mark.parametrize("layout,arch", PAIRS)
def test_every_layout_loads_and_infers_architecture(tmp_path, layout, arch):
    kw = ARCHS[arch]
    model = small(**kw)
    path = tmp_path / "w.pth"
    torch.save(LAYOUTS[layout](model.state_dict()), path)
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert same_outputs(model, loaded)
    expected_layout = {"mmagic": "mmagic", "original": "original"}.get(layout, "basicsr")
    assert read_checkpoint(path).layout == expected_layout


@pytest.mark.parametrize("name", list(OFFICIAL_CONFIGS))
def test_infers_official_architectures(name):
    kwargs = OFFICIAL_CONFIGS[name]
    ckpt = read_checkpoint(EDVR(**kwargs).state_dict())
    for key, value in kwargs.items():
        assert getattr(ckpt.config, key) == value, key
    assert ckpt.config.num_extract_block == 5 and ckpt.config.deformable_groups == 8


def test_params_ema_is_preferred(tmp_path):
    a, b = small(), small(num_feat=24)
    path = tmp_path / "ema.pth"
    torch.save({"params": a.state_dict(), "params_ema": b.state_dict()}, path)
    assert load_model(path).config.num_feat == 24


def test_state_dict_and_pathlike_and_str(tmp_path):
    model = small()
    path = tmp_path / "w.pth"
    torch.save({"params": model.state_dict()}, path)
    assert same_outputs(model, load_model(model.state_dict()))
    assert same_outputs(model, load_model(str(path)))


def test_legacy_non_zip_checkpoint(tmp_path):
    model = small()
    path = tmp_path / "legacy.pth"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    assert same_outputs(model, load_model(path))


def test_loads_from_another_directory(tmp_path, monkeypatch):
    model = small()
    torch.save({"params": model.state_dict()}, tmp_path / "w.pth")
    monkeypatch.chdir(tmp_path)
    assert same_outputs(model, load_model("w.pth"))


# ---- bad files ---------------------------------------------------------------------------------

def good_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "good.pth"
    torch.save({"params": small().state_dict()}, path)
    return path.read_bytes()


def write(tmp_path: Path, data: bytes, name: str = "bad.pth") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pth.*does not exist"):
        load_model(tmp_path / "nope.pth")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(CheckpointError, match="not a file"):
        load_model(tmp_path)


def test_empty_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"bad\.pth.*empty"):
        load_model(write(tmp_path, b""))


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, fraction):
    data = good_bytes(tmp_path)
    with pytest.raises(CheckpointError, match=r"bad\.pth.*truncated or corrupt"):
        load_model(write(tmp_path, data[: int(len(data) * fraction)]))


def test_random_bytes(tmp_path):
    data = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with pytest.raises(CheckpointError, match=r"bad\.pth"):
        load_model(write(tmp_path, bytes(data.tolist())))


def test_damaged_end_of_central_directory(tmp_path):
    """A zip64 end-record locator naming another disk: ``zipfile.is_zipfile`` itself raises BadZipFile
    ("zipfiles that span multiple disks are not supported")."""
    import zipfile

    data = bytearray(good_bytes(tmp_path))
    locator = data.rfind(b"PK\x06\x07")
    assert locator > 0, "torch's zip has a zip64 locator"
    data[locator + 4:locator + 8] = (1).to_bytes(4, "little")  # the disk with the zip64 end record
    path = write(tmp_path, bytes(data))
    with pytest.raises(zipfile.BadZipFile, match="span multiple disks"):
        zipfile.is_zipfile(path)
    with pytest.raises(CheckpointError, match=r"bad\.pth.*damaged zip archive.*span multiple disks"):
        load_model(path)


def test_unreadable_file_is_a_checkpoint_error(tmp_path, monkeypatch):
    path = write(tmp_path, good_bytes(tmp_path))
    real_open = open

    def refuse(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(CheckpointError, match=r"bad\.pth.*cannot be read: Permission denied"):
        load_model(path)


def test_html_error_page(tmp_path):
    page = b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head></html>"
    with pytest.raises(CheckpointError, match="HTML page"):
        load_model(write(tmp_path, page))


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["raw_pickle", "torch_zip"])
def test_pickle_that_would_run_code_is_refused_and_not_run(tmp_path, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    if container == "raw_pickle":
        path.write_bytes(pickle.dumps({"params": Payload(str(marker))}))
    else:
        torch.save({"params": Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth.*(could run code|not a PyTorch checkpoint)"):
        load_model(path)
    assert not marker.exists()


def test_weights_of_another_network(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 3, 3))
    path = tmp_path / "other.pth"
    torch.save({"params": other.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"other\.pth.*does not hold EDVR weights: missing \['conv_l2_1"):
        load_model(path)


def test_extra_and_missing_keys_are_listed(tmp_path):
    sd = small().state_dict()
    sd["bogus.weight"] = torch.zeros(1)
    del sd["reconstruction.0.conv2.bias"]
    path = tmp_path / "keys.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"missing keys \['reconstruction\.0\.conv2\.bias'\].*"
                                              r"unexpected keys \['bogus\.weight'\]"):
        load_model(path)


def test_one_tensor_of_the_wrong_shape(tmp_path):
    sd = small().state_dict()
    sd["fusion.spatial_attn3.weight"] = torch.zeros(16, 16, 5, 5)
    path = tmp_path / "shape.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"shape\.pth.*fusion\.spatial_attn3\.weight: \(16, 16, 5, 5\) vs "
                                              r"\(16, 16, 3, 3\)"):
        load_model(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match=r"list\.pth.*not a state dict"):
        load_model(path)
    with pytest.raises(CheckpointError, match="'weights' must be a path or a state dict"):
        load_model(42)
