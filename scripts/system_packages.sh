#!/usr/bin/env bash
# Debian's packages the tests need: for the previewer test (tests/test_preview.py, scripts/preview_seek.py)
# Xvfb and what vs-preview's Qt 6 needs on X (the xcb platform's libraries; PulseAudio's client library,
# which Qt Multimedia links); for the two-host Ray test (tests/test_multihost.py) iproute2's `ip netns`.
# Installs only what is missing; needs root (or sudo) when something is.
set -euo pipefail
PACKAGES=(xvfb libpulse0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
          libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxcb-xfixes0 libxcb-sync1 libxcb-shm0
          libxcb-util1 libx11-xcb1 libegl1 libgl1 libfontconfig1 libfreetype6 libdbus-1-3 libglib2.0-0
          fonts-dejavu-core iproute2)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "edvr_vs: the tests need these Debian packages, and this system has no apt-get: ${missing[*]}" >&2
    exit 1
fi
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)
echo "edvr_vs: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
