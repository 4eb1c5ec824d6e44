#!/usr/bin/env bash
# Set up .venv (see bootstrap.sh) and run the whole test suite; extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$REPO"
exec "$VENV/bin/python" -m pytest -q "$@"
