#!/usr/bin/env bash
# Set up .venv (see bootstrap.sh) and run the main job: upscale a real clip x4
# through the filter into an encoded file. Extra arguments go to `edvr-vs demo`.
# The same as `python scripts/setup.py demo [ARGS]` (Windows: `py scripts\setup.py demo [ARGS]`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/find_python.sh"
exec_setup_py demo "$@"
