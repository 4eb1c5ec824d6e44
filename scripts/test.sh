#!/usr/bin/env bash
# Set up .venv (see bootstrap.sh) and run the whole test suite; extra arguments go to pytest.
# The same as `python scripts/setup.py test [ARGS]` (Windows: `py scripts\setup.py test [ARGS]`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/find_python.sh"
exec_setup_py test "$@"
