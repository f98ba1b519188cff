#!/usr/bin/env bash
# All tests, from a fresh clone: set-up (cmake for the static HDF5 build, a Python 3.12 env
# with scanpy 1.12.4 / anndata 0.13.4), formatting and lints, the Rust tests, then the
# interop suite that compares atlasnorm with real scanpy bit for bit.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
scripts/python-env.sh
export ATLASNORM_PYTHON="$PWD/.tools/py312/bin/python"

cargo fmt --check
cargo clippy --all-targets --release --quiet -- -D warnings
cargo build --release --quiet
tests/valgrind/run.sh     # memcheck over a sample of h5ad and zarr cases; fails on any error
cargo test --release

export ATLASNORM_BIN="$PWD/target/release/atlasnorm"
"$ATLASNORM_PYTHON" -m pytest tests/interop -q -p no:cacheprovider -n 2 "$@"
