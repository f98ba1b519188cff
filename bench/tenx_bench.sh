#!/usr/bin/env bash
# 10x .h5 benchmark: atlasnorm vs sc.read_10x_h5 + normalize_total + log1p + write_h5ad, side by side
# (bench/tenx_bench.py --help, BENCHMARKS.md "10x inputs").
#   bench/tenx_bench.sh                                   pbmc68k, 1 round
#   bench/tenx_bench.sh --profiles pbmc68k,heart_adult --repeat 3
# ATLASNORM_PYTHON: the Python with scanpy/anndata/h5py (default: the venv made by scripts/python-env.sh).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exec "${ATLASNORM_PYTHON:-$("$repo/scripts/python-env.sh")}" "$repo/bench/tenx_bench.py" "$@"
