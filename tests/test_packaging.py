"""The wheel carries the CUDA sources and YAML, and works from another directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from edvr_vs.nn.edvr import EDVR
from tests.conftest import REPO


def test_wheel_carries_kernels_and_yaml_and_loads_elsewhere(tmp_path):
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(REPO)], check=True, capture_output=True)
    (wheel,) = out.glob("edvr_vs-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.name for p in (REPO / "kernels").glob("*.cu")}
    assert sources, "kernels/ holds no .cu file"
    assert {f"edvr_vs/kernels/{n}" for n in sources} <= names
    data = {f"edvr_vs/{p.relative_to(REPO / 'edvr_vs')}" for pattern in ("*.yaml", "weights/*.pth")
            for p in (REPO / "edvr_vs").glob(pattern)}
    assert "edvr_vs/zoo.yaml" in data and "edvr_vs/weights/EDVR_T_x4_SR.pth" in data
    assert data <= names

    # Installed (not editable) into a separate folder, imported from elsewhere.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    ckpt = tmp_path / "w.pth"
    torch.save({"params": EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1).state_dict()}, ckpt)
    code = ("import edvr_vs, importlib.resources as r; m = edvr_vs.load_model('w.pth'); "
            "print(edvr_vs.__file__); print(m.config.num_feat); "
            "from edvr_vs import zoo; assert zoo.weights_path(zoo.default_model()).is_file(); "
            "print(sorted(p.name for p in r.files('edvr_vs.kernels').iterdir() if p.name.endswith('.cu')))")
    env = os.environ | {"PYTHONPATH": str(target)}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    file_line, feat_line, cu_line = res.stdout.strip().splitlines()
    assert Path(file_line).is_relative_to(target)
    assert feat_line == "16"
    assert cu_line == str(sorted(sources))
