"""`edvr-vs doctor`: valid JSON on a CPU-only machine, kernels not applicable, the CPU's fps, exit 0;
a failed self-check makes it exit 1 with the reason."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from edvr_vs import cli, doctor


def test_doctor_json_on_the_cpu():
    res = subprocess.run([sys.executable, "-m", "edvr_vs", "doctor", "--json", "--seconds", "1"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["versions"]["torch"] == torch.__version__ and rep["versions"]["vapoursynth"] >= 74
    assert rep["versions"]["source_plugins"]["bs"] and "ffmpeg version" in rep["versions"]["ffmpeg"]["version"]
    cpu = [d for d in rep["devices"] if d["device"] == "cpu"]
    assert len(cpu) == 1 and cpu[0]["torch_threads"] >= 1
    assert {k["kernel"] for k in rep["kernels"] if k["device"] == "cpu"} == set(doctor.KERNEL_NAMES)
    assert all(k["status"] == "not applicable" for k in rep["kernels"] if k["device"] == "cpu")
    (bench,) = [b for b in rep["benchmark"] if b["device"] == "cpu"]
    assert bench["model"] == "EDVR_T_x4_SR" and bench["input"] == "176x144" and bench["output"] == "704x576"
    assert bench["fps"] > 0 and bench["frames"] >= 1
    assert rep["problems"] == []


def test_doctor_exits_1_when_a_kernel_fails(monkeypatch, capsys):
    failed = {"kernel": "deform_sample", "device": "cuda:0", "dtype": "fp16", "status": "failed",
              "path": "torch", "reason": "KernelCompileError: NVRTC failed", "max_error": None, "ms": 3.0}
    monkeypatch.setattr(doctor, "kernel_checks", lambda device: [failed])
    monkeypatch.setattr(doctor, "benchmark", lambda device, model, seconds: {"device": str(device), "model": "m",
                                                                             "input": "1x1", "fps": 1.0,
                                                                             "frames": 2, "first_frame_s": 0.1})
    assert cli.main(["doctor"]) == 1
    out, err = capsys.readouterr()
    assert "kernel deform_sample on cuda:0: fp16: failed via torch" in out
    assert "edvr-vs doctor: deform_sample on cuda:0 (fp16): KernelCompileError: NVRTC failed" in err
