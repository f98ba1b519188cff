#!/usr/bin/env bash
# Create (or confirm) the interop suite's Python environment: a venv at <repo>/.tools/py312 with
# exactly the versions pinned in tests/interop/requirements.txt (scanpy 1.12.4, anndata 0.13.4, ...).
#
#   scripts/python-env.sh            # prints the venv's python on stdout, progress on stderr
#   PY=$(scripts/python-env.sh) && "$PY" -m pytest tests/interop -n 2
#
# Idempotent: when the venv exists, runs Python 3.12 and its stamp file holds the sha256 of
# requirements.txt, it does nothing (well under a second). Otherwise it (re)creates what is missing
# and installs the pins from PyPI. Python comes from /root/.pyenv/versions/3.12.*/bin/python3
# (newest patch release), or from $PYTHON312 if set.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.tools/py312"
req="$repo/tests/interop/requirements.txt"
stamp="$venv/.requirements.sha256"

say() { echo "python-env: $*" >&2; }
die() { say "error: $*"; exit 1; }

[ -f "$req" ] || die "missing $req"
want=$(sha256sum "$req" | cut -d' ' -f1)

is_py312() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }

if is_py312 "$venv/bin/python" && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi

if [ -n "${PYTHON312:-}" ]; then
  base=$PYTHON312
else
  base=$(ls -d /root/.pyenv/versions/3.12.*/bin/python3 2>/dev/null | sort -V | tail -n 1 || true)
fi
[ -n "$base" ] || die "no Python 3.12 found: looked for /root/.pyenv/versions/3.12.*/bin/python3 (or set PYTHON312=/path/to/python3.12)"
is_py312 "$base" || die "$base is not a working Python 3.12"

if ! is_py312 "$venv/bin/python"; then
  say "creating $venv with $base"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$base" -m venv "$venv"
fi

say "installing pinned packages from $req"
rm -f "$stamp"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req"
"$venv/bin/python" - <<'EOF' || die "installed versions do not match the pins"
from importlib.metadata import version
import anndata, scanpy, numpy, scipy, h5py, hdf5plugin, numba, pytest, moto.server, boto3  # noqa: F401  (they import)
for name, want in (("scanpy", "1.12.4"), ("anndata", "0.13.4"), ("numpy", "2.5.5"), ("scipy", "1.18.1"),
                   ("h5py", "3.16.0"), ("numba", "0.68.1"), ("moto", "5.2.5")):
    assert version(name) == want, f"{name} {version(name)} != {want}"
EOF
echo "$want" > "$stamp"
say "ready: $venv"
echo "$venv/bin/python"
