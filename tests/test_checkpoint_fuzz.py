"""Fuzzed checkpoints: ≥ 500 seeded mutations of each layout's real file (bit flips, truncation at
every structural boundary, a damaged zip directory, absurd declared sizes, pickles naming unexpected
globals, deeply nested and very wide containers) each end in CheckpointError, or load the very
weights they hold, within a time and memory bound, in a subprocess that must not crash or hang
(tests/checkpoint_fuzz.py; a failure prints the command that repeats it)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.linux(reason="the fuzz process caps its memory with RLIMIT_DATA and reads /proc/self/status")

REPO = Path(__file__).resolve().parents[1]
CASES = 510
SEED = "edvr_vs-fuzz-1"


@pytest.mark.parametrize("layout", ["basicsr", "mmagic", "original"])
def test_mutated_checkpoints_fail_cleanly(tmp_path, layout):
    cmd = [sys.executable, "-m", "tests.checkpoint_fuzz", layout, SEED, str(CASES), str(tmp_path)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    rows = [r for r in lines if "case" in r]
    again = f"repeat with: python -m tests.checkpoint_fuzz {layout} {SEED} {CASES} DIR"
    boundaries = [r for r in rows if r["kind"] == "boundary"]
    assert res.returncode == 0 and len(rows) == CASES + len(boundaries), (
        f"the loader process ended with {res.returncode} at {lines[-1] if lines else 'the start'}; {again}\n"
        f"{res.stderr[-2000:]}")
    # A legacy-format file has no checksum: a bit flipped inside a tensor's bytes loads as another value.
    allowed = lambda r: r["outcome"] in ("error", "same") or (  # noqa: E731
        r["outcome"] == "values" and layout == "original" and r["what"].endswith("in tensor data"))
    bad = [r for r in rows if not allowed(r)]
    assert not bad, f"{len(bad)} cases: {bad[:3]}; {again}"
    assert max(r["seconds"] for r in rows) < 5
    assert max(r["peak_rss_mb"] for r in rows) < 2048
    assert len(boundaries) >= 20 and all(r["outcome"] == "error" for r in boundaries)
    kinds = Counter(r["kind"] for r in rows if r["kind"] != "boundary")
    assert len(kinds) == (6 if layout != "original" else 5) and min(kinds.values()) >= 80
    assert Counter(r["outcome"] for r in rows)["error"] >= len(rows) * 0.8  # the mutations really damage
