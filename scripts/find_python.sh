#!/usr/bin/env bash
# Print a Python >= 3.12 interpreter, found the way a user's machine has one (find_python in
# scripts/setup.py: $EDVR_VS_PYTHON; else python3, python3.14 .. python3.12, python on PATH; else the
# oldest pyenv-installed version >= 3.12). Exit 1 with advice on stderr when there is none.
# Sourced (by bootstrap.sh, test.sh, demo.sh), it only defines exec_setup_py.

# exec_setup_py ARGS: replace this shell with `<some Python 3.8+> scripts/setup.py ARGS` (call it last,
# or inside $(...)). The Python that runs setup.py is $EDVR_VS_PYTHON, python3, python or any of pyenv's.
exec_setup_py() {
    local here=${BASH_SOURCE[0]%/*} root c
    [ "$here" != "${BASH_SOURCE[0]}" ] || here=.
    root=${PYENV_ROOT:-$( (pyenv root) 2>/dev/null || echo "$HOME/.pyenv")}
    for c in "${EDVR_VS_PYTHON:-}" python3 python "$root"/versions/*/bin/python3; do
        if [ -n "$c" ] && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 8))' >/dev/null 2>&1; then
            exec "$c" "$here/setup.py" "$@"
        fi
    done
    cat >&2 <<MSG
error: edvr_vs needs Python >= 3.12 (the vapoursynth wheel requires it), and none was found
       on PATH (python3, python) or among pyenv's versions in $root/versions.
       Install one: 'pyenv install 3.12' or your distribution's python3.12 package (Linux),
       'brew install python@3.12' or 'pyenv install 3.12' (macOS); or point EDVR_VS_PYTHON at
       its interpreter. Then run this again.
MSG
    return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    exec_setup_py find-python
fi
