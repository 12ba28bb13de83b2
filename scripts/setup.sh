#!/usr/bin/env bash
# Installs everything edgekit needs on a fresh Debian/Ubuntu machine: the Arm toolchain and QEMU (apt), then
# edgekit itself with its pinned dependencies (pip). Safe to run again: it skips what is already there.
# `bash scripts/setup.sh --tflm` also installs the Arm C++ library that TFLite Micro builds need.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi gcc make cmake python3-venv
              qemu-user gcc-aarch64-linux-gnu  # these two: the qemu-aarch64 and linux-aarch64 boards
              chromium  # headless, it renders `edgekit report` pages in the tests (tests/test_report.py)
              postgresql)  # the server the distributed `edgekit tune` test starts a throwaway cluster of
# --tflm: also what compiling TFLite Micro projects needs (its C++ library for Arm alone is about 1.5 GB)
if [ "${1:-}" = "--tflm" ]; then
  apt_packages+=(libstdc++-arm-none-eabi-newlib)
fi
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

# A system Python that forbids pip installs (PEP 668, e.g. Debian 12's python3) gets a virtual environment.
python=python3
managed=$(python3 -c 'import sys, sysconfig, os; print(int(sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED"))))')
if [ "$managed" = 1 ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  python=.venv/bin/python
  echo "setup: this system's python3 is externally managed; installing into .venv (activate it: . .venv/bin/activate)"
fi

echo "setup: installing edgekit and its pinned dependencies (pip)"
"$python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,distributed]"
echo "setup: done ($("$python" -m edgekit --version))"
