#!/usr/bin/env bash
# Create or reuse the virtual environment at <repo>/.venv and install edvr_vs (editable) with its
# test, cluster (Ray) and onnx extras: `scripts/setup.py venv`, which reinstalls only when
# pyproject.toml or the setup scripts changed. Run, it prints the environment's interpreter;
# sourced, it sets VENV_PYTHON to it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/find_python.sh"
VENV_PYTHON=$(exec_setup_py venv)
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "$VENV_PYTHON"
fi
