#!/usr/bin/env bash
# Print a Python >= 3.12 interpreter, found the way a user's machine has one:
# $EDVR_VS_PYTHON if set; else the first of python3, python3.14 .. python3.12, python on PATH
# that is new enough; else the oldest pyenv-installed version >= 3.12 ($PYENV_ROOT, or
# `pyenv root`, or ~/.pyenv). Exit 1 with advice on stderr when there is none.
# Sourced (by bootstrap.sh), it only defines is_new_enough and find_python.

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

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    find_python
fi
