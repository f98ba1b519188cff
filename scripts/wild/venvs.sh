#!/usr/bin/env bash
# The writer environments of the wild corpus: one venv per writer under .tools/wild/NAME, each on the
# Python and with the pins below (found to install from PyPI and to work together on this machine).
#
#   scripts/wild/venvs.sh            # create/confirm every venv (idempotent: a stamp per venv)
#   scripts/wild/venvs.sh NAME...    # only these
#
# A venv whose stamp (.pins.sha256) matches its pin line is kept as it is (well under a second);
# otherwise it is recreated from scratch. About 20-60 s per venv on a fresh machine.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
root="$repo/.tools/wild"

# NAME | Python (major.minor, from /root/.pyenv/versions) | pins
SPECS=(
  "anndata-0.7|3.8|anndata==0.7.8 numpy==1.21.6 pandas==1.3.5 scipy==1.7.3 h5py==3.6.0 zarr==2.10.3 numcodecs==0.9.1 python-dateutil==2.8.2"
  "anndata-0.8|3.9|anndata==0.8.0 numpy==1.22.4 pandas==1.4.4 scipy==1.8.1 h5py==3.7.0 zarr==2.12.0 numcodecs==0.10.2 python-dateutil==2.8.2"
  "anndata-0.9|3.10|anndata==0.9.2 numpy==1.24.4 pandas==2.0.3 scipy==1.10.1 h5py==3.9.0 zarr==2.16.1 numcodecs==0.11.0 python-dateutil==2.8.2"
  "anndata-0.10|3.11|anndata==0.10.9 numpy==1.26.4 pandas==2.2.2 scipy==1.13.1 h5py==3.11.0 zarr==2.18.2 numcodecs==0.12.1"
  "anndata-0.11|3.12|anndata==0.11.4 numpy==2.1.3 pandas==2.2.3 scipy==1.14.1 h5py==3.12.1 zarr==2.18.3 numcodecs==0.13.1"
  "anndata-0.12|3.13|anndata==0.12.19 numpy==2.3.5 pandas==2.3.3 scipy==1.18.1 h5py==3.16.0 zarr==3.1.6 numcodecs==0.17.1 python-dateutil==2.9.0.post0"
  # anndata-rs (through anndataoom) and, in the same venv, h5py + hdf5plugin for the by-hand files
  "anndataoom|3.12|anndataoom==0.1.8 anndata==0.13.4 h5py==3.16.0 hdf5plugin==7.1.0 numpy==2.5.5 pandas==3.1.1 scipy==1.18.1 zarr==3.4.2 numcodecs==0.17.1 polars==1.31.0 pyarrow==26.0.1 python-dateutil==2.9.0.post0"
)

say() { echo "wild venvs: $*" >&2; }

want_names=("$@")
mkdir -p "$root"
for spec in "${SPECS[@]}"; do
  IFS='|' read -r name py pins <<<"$spec"
  if [ ${#want_names[@]} -gt 0 ] && [[ ! " ${want_names[*]} " =~ " $name " ]]; then continue; fi
  venv="$root/$name"
  stamp="$venv/.pins.sha256"
  want=$(printf '%s|%s' "$py" "$pins" | sha256sum | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    continue
  fi
  base=$(ls -d /root/.pyenv/versions/"$py".*/bin/python3 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$base" ] || { say "error: no Python $py under /root/.pyenv/versions"; exit 1; }
  say "creating $venv (Python $py): $pins"
  rm -rf "$venv"
  "$base" -m venv "$venv"
  # shellcheck disable=SC2086  # pins are words
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q $pins
  "$venv/bin/python" -m pip freeze --disable-pip-version-check >"$venv/freeze.txt"
  echo "$want" >"$stamp"
done
