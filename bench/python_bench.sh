#!/usr/bin/env bash
# In-memory Python benchmark: scanpy vs AutoZyme vs atlasnorm for sc.pp.normalize_total + sc.pp.log1p
# (see bench/python_bench.py --help and BENCHMARKS.md "Python in-memory").
#
#   bench/python_bench.sh                      # full run: pbmc68k + the largest real matrix, 1 and 2 threads
#   bench/python_bench.sh --rounds 5 --warm 7  # options go to bench/python_bench.py
#   bench/python_bench.sh --setup-only         # only make/confirm the AutoZyme venv
#
# scanpy and atlasnorm run with the project's env (.tools/py312, made by scripts/python-env.sh;
# atlasnorm must already be installed there). AutoZyme runs from a separate venv,
# .tools/bench-autozyme, with the same pins as tests/interop/requirements.txt plus autozyme==0.3.1,
# so it never touches the main env. Idempotent: an existing venv whose stamp matches is reused.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
req="$repo/tests/interop/requirements.txt"
venv="$repo/.tools/bench-autozyme"
stamp="$venv/.requirements.sha256"
autozyme_pin="autozyme==0.3.1"

say() { echo "python_bench: $*" >&2; }
die() { say "error: $*"; exit 1; }
is_py312() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }

main_py=${ATLASNORM_PYTHON:-}
if [ -z "$main_py" ]; then
  main_py=$("$repo/scripts/python-env.sh")
fi
"$main_py" -c 'import atlasnorm, scanpy' || die "$main_py lacks atlasnorm or scanpy (install atlasnorm into it first)"

want=$( (sha256sum "$req" | cut -d' ' -f1; echo "$autozyme_pin") | sha256sum | cut -d' ' -f1)
if is_py312 "$venv/bin/python" && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "AutoZyme venv ready: $venv"
else
  base=${PYTHON312:-$(ls -d /root/.pyenv/versions/3.12.*/bin/python3 2>/dev/null | sort -V | tail -n 1 || true)}
  [ -n "$base" ] || die "no Python 3.12 at /root/.pyenv/versions/3.12.*/bin/python3 (or set PYTHON312)"
  is_py312 "$base" || die "$base is not a working Python 3.12"
  if ! is_py312 "$venv/bin/python"; then
    say "creating $venv with $base"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$base" -m venv "$venv"
  fi
  say "installing the pins of $req + $autozyme_pin into $venv"
  rm -f "$stamp"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" "$autozyme_pin"
  "$venv/bin/python" - <<'EOF' || die "AutoZyme venv: versions do not match the pins"
from importlib.metadata import version
import anndata, scanpy, numpy, numba, autozyme  # noqa: F401
for name, want in (("scanpy", "1.12.4"), ("anndata", "0.13.4"), ("numpy", "2.5.5"), ("numba", "0.68.1"),
                   ("autozyme", "0.3.1")):
    assert version(name) == want, f"{name} {version(name)} != {want}"
EOF
  echo "$want" > "$stamp"
  say "AutoZyme venv ready: $venv"
fi

if [ "${1:-}" = "--setup-only" ]; then
  exit 0
fi
exec "$main_py" "$repo/bench/python_bench.py" --main-python "$main_py" --autozyme-python "$venv/bin/python" "$@"
