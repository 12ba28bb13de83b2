#!/usr/bin/env bash
# Installs everything edgekit needs on a fresh Debian/Ubuntu machine: the Arm toolchain and QEMU (apt), then
# edgekit itself with its pinned dependencies (pip). Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi gcc make)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]} (apt)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "setup: installing edgekit and its pinned dependencies (pip)"
python3 -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
echo "setup: done ($(edgekit --version))"
