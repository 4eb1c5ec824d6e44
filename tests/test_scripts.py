"""The benchmark scripts run (small, on the CPU) and print the JSON they promise."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def run_json(*args: str) -> dict:
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_bench_dcn_quick():
    out = run_json("scripts/bench_dcn.py", "--quick", "--device", "cpu", "--repeat", "1")
    (row,) = out["rows"]
    assert out["benchmark"] == "dcn" and row["channels"] == 64 and (row["height"], row["width"]) == (45, 80)
    assert row["ours_ms"] > 0 and row["torchvision_ms"] > 0
    assert abs(row["ratio"] - row["torchvision_ms"] / row["ours_ms"]) < 0.01 * row["ratio"] + 1e-3
