#!/usr/bin/env bash
# All tests, from a fresh clone: set-up (cmake for the static HDF5 build, a Python 3.12 env
# with scanpy 1.12.4 / anndata 0.13.4), formatting and lints, the Rust tests, the Python
# package's tests (and scanpy's own, patched), then the interop suite that compares the CLI
# with real scanpy bit for bit.
set -euo pipefail
cd "$(dirname "$0")"
# Test data the suites read must be in git: CI runs on a clean checkout (a regression case whose
# input .h5ad was ignored once failed there and nowhere else).
if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
  untracked_data=$(git ls-files --others --ignored --exclude-standard --directory tests/data)
  if [ -n "$untracked_data" ]; then
    echo "test data ignored by git (CI's clean checkout would lack it):" >&2
    echo "$untracked_data" >&2
    exit 1
  fi
fi
scripts/setup.sh
scripts/python-env.sh
export ATLASNORM_PYTHON="$PWD/.tools/py312/bin/python"

cargo fmt --all --check
scripts/build.sh --workspace --all-targets   # the binary and every test binary, with progress
cargo clippy --workspace --all-targets --release --quiet -- -D warnings
tests/valgrind/run.sh     # memcheck over a sample of h5ad and zarr cases; fails on any error
# The core alone: no C library, no I/O crate (the layering promise of ARCHITECTURE.md).
if cargo tree -p atlasnorm-core -e normal --prefix none | grep -Eq '^(hdf5|zarrs|object_store|tokio)'; then
  echo "atlasnorm-core depends on an I/O crate:" >&2
  cargo tree -p atlasnorm-core -e normal >&2
  exit 1
fi
# The store without its S3 client (cargo feature `s3`): it builds, with no tokio or object_store.
cargo check -p atlasnorm-store --release --no-default-features --quiet
if cargo tree -p atlasnorm-store --no-default-features -e normal --prefix none | grep -Eq '^(object_store|zarrs_object_store|tokio) '; then
  echo "atlasnorm-store without the s3 feature still depends on the S3 client:" >&2
  cargo tree -p atlasnorm-store --no-default-features -e normal >&2
  exit 1
fi
cargo test --release --workspace

# The Python package, installed as a user installs it (pip install ./python), against
# unpatched scanpy call by call, then scanpy 1.12.4's own tests with the patch active.
scripts/python-package.sh "$ATLASNORM_PYTHON"
"$ATLASNORM_PYTHON" -m pytest tests/python -q -p no:cacheprovider -n 2 --ignore=tests/python/scanpy_suite --ignore=tests/python/test_dask.py --ignore=tests/python/test_dask_patch.py
# atlasnorm.dask on its own LocalClusters (two worker processes each), one test at a time.
timeout 1200 "$ATLASNORM_PYTHON" -m pytest tests/python/test_dask.py -q -p no:cacheprovider -p no:logging
# The scanpy patch on dask arrays (ends on a LocalCluster of two worker processes), serially.
timeout 600 "$ATLASNORM_PYTHON" -m pytest tests/python/test_dask_patch.py -q -p no:cacheprovider -p no:logging
tests/python/scanpy_suite/run.sh "$ATLASNORM_PYTHON"

export ATLASNORM_BIN="$PWD/target/release/atlasnorm"
"$ATLASNORM_PYTHON" -m pytest tests/interop -q -p no:cacheprovider -n 2 "$@"
