#!/usr/bin/env bash
# Set up .venv (see bootstrap.sh) and run the main job: upscale a real clip x4
# through the filter into an encoded file. Extra arguments go to `edvr-vs demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$REPO"
exec "$VENV/bin/python" -m edvr_vs demo "$@"
