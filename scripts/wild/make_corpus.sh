#!/usr/bin/env bash
# Regenerates the wild corpus: AnnData files as other writers leave them, for tests/interop/test_wild.py.
#
#   scripts/wild/make_corpus.sh [OUT_DIR]     # default tests/data/wild (replaced as a whole)
#
# 1. scripts/wild/venvs.sh: one venv per writer under .tools/wild/ (anndata 0.7.8 ... 0.12.19 on
#    Python 3.8 ... 3.13, anndataoom/anndata-rs + h5py + hdf5plugin on 3.12), cached: a venv whose
#    pins did not change is reused. From scratch that took 13 min here (2 cores, PyPI); cached, < 1 s.
# 2. each writer script in its venv writes its files and a manifest fragment; the fragments are
#    merged into OUT_DIR/MANIFEST.tsv (file, writer, version, python, what is special).
#    About 40 s with the venvs in place.
# The content is synthetic (negative-binomial counts from fixed seeds, scripts/wild/common.py): no
# data from shared/ or elsewhere goes in. Files are written in a staging directory and moved into
# place only when every writer succeeded.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/tests/data/wild}
venvs="$repo/.tools/wild"
start=$(date +%s)

"$here/venvs.sh"
t_venv=$(( $(date +%s) - start ))

mkdir -p "$(dirname "$out")"
stage=$(mktemp -d "${out%/}.staging.XXXXXX")
trap 'rm -rf "$stage"' EXIT
for v in 0.7 0.8 0.9 0.10 0.11 0.12; do
  echo "make_corpus: anndata $v" >&2
  "$venvs/anndata-$v/bin/python" "$here/write_anndata.py" "$stage"
done
echo "make_corpus: anndata-rs (anndataoom)" >&2
"$venvs/anndataoom/bin/python" "$here/write_anndataoom.py" "$stage"
echo "make_corpus: h5py + hdf5plugin" >&2
"$venvs/anndataoom/bin/python" "$here/write_h5py.py" "$stage"

{
  printf 'file\twriter\tversion\tpython\tspecial\n'
  cat "$stage"/_manifest.*.tsv | LC_ALL=C sort
} >"$stage/MANIFEST.tsv"
rm -f "$stage"/_manifest.*.tsv

rm -rf "$out"
mv "$stage" "$out"
trap - EXIT
n=$(($(wc -l <"$out/MANIFEST.tsv") - 1))
echo "make_corpus: $n files in $out ($(du -sh "$out" | cut -f1) on disk; venvs ${t_venv}s, total $(( $(date +%s) - start ))s)" >&2
