#!/usr/bin/env bash
# Builds the Python package from python/ the way a user installs it (`pip install ./python`:
# maturin and cmake come from PyPI into pip's isolated build environment) and installs it into
# the Python given as $1 (default: the interop env's). Reuses target/ from earlier builds.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-.tools/py312/bin/python}
echo "python-package: pip install ./python into $py (a first build compiles the extension, ~3-15 min)" >&2
"$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python
"$py" -c 'import atlasnorm; print("python-package: atlasnorm", atlasnorm.__version__, "threads", atlasnorm.get_threads())' >&2
