#!/usr/bin/env bash
# Create or reuse the virtual environment at <repo>/.venv and install edvr_vs
# (editable) with its test and cluster (Ray) extras. Sourced by scripts/demo.sh and scripts/test.sh.
#
# The interpreter comes from scripts/find_python.sh. A second run with an unchanged
# pyproject.toml installs nothing.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO/.venv"

source "$REPO/scripts/find_python.sh"

if [ -x "$VENV/bin/python" ] && is_new_enough "$VENV/bin/python"; then
    :
else
    PY=$(find_python)
    echo "edvr_vs: creating $VENV with $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))" >&2
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi

STAMP="$VENV/.edvr_vs-installed"
WANT=$(cat "$REPO/pyproject.toml" "$REPO/scripts/bootstrap.sh" "$REPO/scripts/find_python.sh" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "edvr_vs: installing edvr_vs and its dependencies into $VENV (torch is a few GB; minutes on a first run)" >&2
    LOG="$VENV/install.log"
    if ! { "$VENV/bin/python" -m pip install --upgrade pip \
           && "$VENV/bin/python" -m pip install -e "$REPO[test,cluster,onnx]"; } >"$LOG" 2>&1; then
        tail -n 30 "$LOG" >&2
        echo "error: installing into $VENV failed; full log: $LOG" >&2
        exit 1
    fi
    echo "$WANT" >"$STAMP"
fi

# vspipe finds this environment's Python through VapourSynth's runtime configuration.
"$VENV/bin/vapoursynth" config >/dev/null
