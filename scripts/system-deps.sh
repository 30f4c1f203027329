#!/usr/bin/env bash
# Install the Debian/Ubuntu system libraries the project's wheels need.
#   libusb-1.0-0            Open3D's wheel links against it
#   libgl1 libegl1 libosmesa6 libgl1-mesa-dri libglx-mesa0 libegl-mesa0
#                           Mesa: off-screen rendering (VTK/PyVista) without a display
#   libgomp1                OpenMP runtime used by Open3D
#   libx11-6 libxrender1 libxext6 libxt6   X client libraries VTK's wheel loads
#   xvfb xdotool            a real (virtual) window for the viewer test, and clicks in it
#   chromium                a real browser (headless, Playwright) for the `twin web` tests
#   gcc libc6-dev pkg-config libzmq3-dev   build the reference C gateway (examples/gateway_c) that
#                           its test compiles and runs against a live twin
#   python3-venv            Debian's python3 needs it for `python3 -m venv`
#   nodejs npm              an independent MCAP reader (TypeScript's @mcap/core, installed by
#                           `make setup` into tests/node) that a test reads recordings with;
#                           only where node or npm is missing (NodeSource's nodejs has npm)
# Root: installs what is missing with apt-get. Otherwise: prints the exact apt-get
# line and exits 1. On a system without dpkg it says so and carries on.
set -euo pipefail

packages=(libusb-1.0-0 libgl1 libegl1 libosmesa6 libgl1-mesa-dri libglx-mesa0 libegl-mesa0
          libgomp1 libx11-6 libxrender1 libxext6 libxt6 xvfb xdotool chromium
          gcc libc6-dev pkg-config libzmq3-dev)
# python3-venv only matters for a Debian-packaged python3 without ensurepip
if ! "${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    packages+=(python3-venv)
fi

command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "system-deps: no dpkg here; make sure these (or your system's equivalents) are installed: ${packages[*]}" >&2
    exit 0
fi

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

line="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
    echo "system-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "system-deps: missing system packages; run as root:" >&2
    echo "  sudo sh -c '$line'" >&2
    exit 1
fi
