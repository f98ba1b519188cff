#!/usr/bin/env bash
# Prepares a fresh machine to build atlasnorm: the static HDF5 build (hdf5-metno-src) needs
# cmake >= 3.26, newer than Debian's, so PyPI's cmake wheel goes into .tools/cmake-venv
# (.cargo/config.toml points the build at it). Idempotent and quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

cmake_ok() {
  [ -x .tools/cmake-venv/bin/cmake ] || return 1
  local v
  v=$(.tools/cmake-venv/bin/cmake --version | head -n1 | awk '{print $3}')
  [ "$(printf '%s\n' 3.26 "$v" | sort -V | head -n1)" = 3.26 ]
}

if ! cmake_ok; then
  echo "setup: installing cmake (>= 3.26) from PyPI into .tools/cmake-venv" >&2
  mkdir -p .tools
  rm -rf .tools/cmake-venv
  python3 -m venv .tools/cmake-venv
  .tools/cmake-venv/bin/pip install --quiet --disable-pip-version-check 'cmake>=3.26,<5'
fi
cmake_ok || { echo "setup: cmake >= 3.26 is still missing" >&2; exit 1; }
