#!/usr/bin/env bash
# End-to-end benchmark: cp vs atlasnorm vs scanpy, side by side (see bench/e2e.py --help, BENCHMARKS.md).
#   bench/run.sh                                        pbmc68k, uncompressed, 3 rounds
#   bench/run.sh --profiles pbmc68k --compression none,gzip
#   ATLASNORM_BIN=/path/to/atlasnorm bench/run.sh --inputs a.h5ad b.h5ad --repeat 5
# ATLASNORM_PYTHON: the Python with scanpy/anndata (default: the venv made by scripts/python-env.sh).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${ATLASNORM_PYTHON:-}
if [ -z "$py" ]; then
  py=$("$repo/scripts/python-env.sh")
fi
export ATLASNORM_PYTHON=$py
exec "$py" "$repo/bench/e2e.py" "$@"
