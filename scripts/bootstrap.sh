#!/usr/bin/env bash
# Create or reuse the virtual environment at <repo>/.venv and install edvr_vs
# (editable) with its test extras. Sourced by scripts/demo.sh and scripts/test.sh.
#
# The interpreter: $EDVR_VS_PYTHON if set, else the first Python >= 3.12 on PATH
# (python3, python3.14 .. python3.12, python), else the oldest pyenv-installed
# version >= 3.12. A second run with an unchanged pyproject.toml installs nothing.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO/.venv"

is_new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

find_python() {
    if [ -n "${EDVR_VS_PYTHON:-}" ]; then
        is_new_enough "$EDVR_VS_PYTHON" && { echo "$EDVR_VS_PYTHON"; return 0; }
        echo "error: EDVR_VS_PYTHON=$EDVR_VS_PYTHON is not a working Python >= 3.12" >&2
        return 1
    fi
    local c p root
    for c in python3 python3.14 python3.13 python3.12 python; do
        p=$(command -v "$c" 2>/dev/null) && is_new_enough "$p" && { echo "$p"; return 0; }
    done
    root=${PYENV_ROOT:-$( (pyenv root) 2>/dev/null || echo "$HOME/.pyenv")}
    while read -r p; do
        [ -n "$p" ] && is_new_enough "$p" && { echo "$p"; return 0; }
    done < <(ls -d "$root"/versions/3.*/bin/python3 2>/dev/null | sort -V)
    cat >&2 <<MSG
error: edvr_vs needs Python >= 3.12 (the vapoursynth wheel requires it), and none was found
       on PATH (python3, python3.14 .. python3.12, python) or among pyenv's versions in $root/versions.
       Install one (e.g. 'pyenv install 3.12' or your distribution's python3.12 package),
       or point EDVR_VS_PYTHON at its interpreter, then run this again.
MSG
    return 1
}

if [ -x "$VENV/bin/python" ] && is_new_enough "$VENV/bin/python"; then
    :
else
    PY=$(find_python)
    echo "edvr_vs: creating $VENV with $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))" >&2
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi

STAMP="$VENV/.edvr_vs-installed"
WANT=$(cat "$REPO/pyproject.toml" "$REPO/scripts/bootstrap.sh" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "edvr_vs: installing edvr_vs and its dependencies into $VENV (torch is a few GB; minutes on a first run)" >&2
    LOG="$VENV/install.log"
    if ! { "$VENV/bin/python" -m pip install --upgrade pip \
           && "$VENV/bin/python" -m pip install -e "$REPO[test]"; } >"$LOG" 2>&1; then
        tail -n 30 "$LOG" >&2
        echo "error: installing into $VENV failed; full log: $LOG" >&2
        exit 1
    fi
    echo "$WANT" >"$STAMP"
fi

# vspipe finds this environment's Python through VapourSynth's runtime configuration.
"$VENV/bin/vapoursynth" config >/dev/null
