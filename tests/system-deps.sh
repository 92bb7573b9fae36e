#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, if any is missing.
set -euo pipefail
# util-linux (unshare) and iproute2 (ip) make the Ray test's loopback-only
# network namespace.
packages=(ffmpeg espeak-ng chromium chromium-driver postgresql util-linux iproute2)
# The browser tests (tests/browser) need Node.js and npm as well.
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing ${missing[*]}; install them (as root: apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "system-deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
