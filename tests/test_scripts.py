"""The benchmark scripts run (small, on the CPU) and print the JSON they promise."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_json(*args: str) -> dict:
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_bench_dcn_quick():
    out = run_json("scripts/bench_dcn.py", "--quick", "--device", "cpu", "--repeat", "1")
    (row,) = out["rows"]
    assert out["benchmark"] == "dcn" and row["channels"] == 64 and (row["height"], row["width"]) == (45, 80)
    assert row["model"] == "EDVR-M" and row["frames"] == 5 and list(row["backends"]) == ["torch"]
    ours = row["backends"]["torch"]
    assert ours["ms"] > 0 and row["torchvision_ms"] > 0
    assert abs(ours["ratio"] - row["torchvision_ms"] / ours["ms"]) < 0.01 * ours["ratio"] + 1e-3
    # effective bandwidth: input, conv_offset output, weights and output once each (fp32)
    nbytes = (5 * 64 * 45 * 80 * 2 + 5 * 216 * 45 * 80 + 64 * 64 * 9) * 4
    assert abs(ours["gbps"] - nbytes / ours["ms"] / 1e6) < 0.01 * ours["gbps"] + 0.01


def test_bench_small_on_cpu():
    out = run_json("scripts/bench.py", "--device", "cpu", "--frames", "3", "--sizes", "32x48", "--ablation", "--profile")
    (row,) = out["rows"]
    assert out["switches"] == {"channels_last": True, "batch_align": None, "check_offsets": False,
                               "cuda_graphs": False, "num_streams": 1, "pinned_memory": True,
                               "fused_convs": True, "autotune": True}
    assert row["model"] == "EDVR-M" and row["output"] == "128x192" and row["precision"] == "fp32"
    assert row["frames"] == 3 and row["features_computed"] == 3  # each frame's features once
    assert row["filter_fps"] > 0 and row["reference_ms"] > 0 and row["model_ms"] > 0
    assert row["first_frame_s"] > 0 and 0 < row["overall_fps"]
    assert abs(row["speedup"] - row["reference_ms"] * row["filter_fps"] / 1000) < 0.01
    # each CPU switch flipped on its own (the CUDA-only ones are left out on the CPU)
    assert set(row["ablation_fps"]) == {"base", "channels_last=False", "fused_convs=False", "batch_align=True",
                                        "check_offsets=True"}
    assert all(v > 0 for v in row["ablation_fps"].values())
    # where a frame's time goes: the parts are the engine's time, the wall time is engine + I/O + the rest
    prof = row["profile"]
    assert prof["frames"] == 2 and prof["engine_ms"] > 0 and prof["frame_io_ms"] >= 0
    assert abs(prof["wall_ms"] - prof["engine_ms"] - prof["frame_io_ms"] - prof["outside_ms"]) < 0.3
    assert {"convolutions", "sampling", "gemm", "copies", "elementwise"} <= set(prof["parts"])
    assert abs(sum(p["ms"] for p in prof["parts"].values()) - prof["engine_ms"]) < 0.1 * len(prof["parts"])
    assert abs(sum(p["percent"] for p in prof["parts"].values()) - 100) < 0.1 * len(prof["parts"])
    assert max(prof["parts"], key=lambda k: prof["parts"][k]["ms"]) == "convolutions"


def test_bench_refuses_unknown_switch():
    res = subprocess.run([sys.executable, "scripts/bench.py", "--device", "cpu", "--set", "turbo=true"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode != 0 and "bench: --set: unknown switch 'turbo'" in res.stderr


def test_frame_bytes_is_the_memory_model():
    out = run_json("scripts/frame_bytes.py", "--models", "M", "L", "--sizes", "540x960", "--precisions", "fp16")
    rows = {r["model"]: r for r in out["rows"]}
    for name, feat in (("EDVR-M", 64), ("EDVR-L", 128)):
        pixels = 540 * 960  # multiples of 4 already; levels of 1, 1/4, 1/16 of the pixels
        values = 3 * pixels + 3 * feat * (pixels + pixels // 4 + pixels // 16)
        assert rows[name]["frame_bytes"] == 2 * values and rows[name]["window_mib"] == round(5 * 2 * values / 2 ** 20, 1)
    assert rows["EDVR-M"]["frame_bytes"] == 264_384_000


@pytest.mark.linux(reason="the soak reads /proc for memory and descriptors")
def test_soak_samples_memory_and_descriptors():
    out = run_json("scripts/soak.py", "--frames", "30", "--every", "10", "--size", "32x32")
    assert out["frames"] == 30 and out["vspipe_rc"] == 0 and [s["frames"] for s in out["samples"]] == [10, 20, 30]
    assert all(s["rss_bytes"] > 100e6 and s["open_fds"] >= 3 for s in out["samples"])  # the real vspipe, with torch
    assert isinstance(out["rss_growth_bytes_per_1000_frames"], int)


def test_bench_peers_small():
    out = run_json("scripts/bench_peers.py", "--size", "48x32", "--frames", "4", "--threads", "1")
    assert out["model"] == "EDVR_T_x4_SR" and out["size"] == "48x32" and out["frames"] == 4
    results = out["results"]
    assert list(results)[:2] == ["edvr_cpu", "ort_cpu"]
    assert all(r["fps"] > 0 and r["first_frame_s"] > 0 for r in results.values())
    assert results["ort_cpu"]["max_abs_diff_vs_edvr_cpu"] < 1e-3  # the same frames
    ratio = out["fps_ratio_vs_edvr_cpu"]
    assert ratio["edvr_cpu"] == 1 and abs(ratio["ort_cpu"] - results["ort_cpu"]["fps"] / results["edvr_cpu"]["fps"]) < 1e-3
