#!/usr/bin/env bash
# Builds the release binary (and, with --all-targets, the tests), saying up front what a first
# build costs and showing cargo's progress (one line a crate) instead of a silent wait.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x target/release/atlasnorm ]; then
  echo "building atlasnorm: the first build on a fresh 2-core machine takes ~13-19 minutes" \
       "(libhdf5 compiled from source with cmake, then ~400 crates); later builds take seconds" \
       "to a few minutes. cargo's progress follows." >&2
fi
exec cargo build --release "$@"
