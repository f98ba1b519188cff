#!/usr/bin/env bash
# Runs a sample of .h5ad and .zarr cases of `atlasnorm normalize` under valgrind memcheck and
# fails on any memcheck error (invalid reads/writes, frees, uses of uninitialised values in a
# decision or a system call). Small inputs (240 cells), two cases at a time: well under three
# minutes on 2 cores. Called by test.sh after `cargo build --release`.
#
#   tests/valgrind/run.sh            # the release binary, the interop venv's Python
#   ATLASNORM_BIN=... ATLASNORM_PYTHON=... tests/valgrind/run.sh
#   VALGRIND_JOBS=N                  # cases run at once (default 2)
#
# Suppressions: tests/valgrind/atlasnorm.supp, only documented third-party false positives.
# Leaks are not checked (the process exits right after the run; a leak is not a memory error).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${ATLASNORM_BIN:-$ROOT/target/release/atlasnorm}
PY=${ATLASNORM_PYTHON:-$ROOT/.tools/py312/bin/python}
JOBS=${VALGRIND_JOBS:-2}
SUPP=$ROOT/tests/valgrind/atlasnorm.supp

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind: not installed; installing Debian's package"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get install -y valgrind >/dev/null 2>&1 \
        || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y valgrind >/dev/null; }
fi
[ -x "$BIN" ] || { echo "valgrind: $BIN not built (cargo build --release)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/atlasnorm-valgrind.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
"$PY" "$ROOT/tests/valgrind/make_inputs.py" "$WORK/in"
"$BIN" synth "$WORK/in/synth_lzf.h5ad" --cells 300 --genes 200 --seed 5 --compression lzf >/dev/null

# name | arguments of `atlasnorm normalize` (INPUT OUTPUT relative to $WORK/in and $WORK/out)
CASES=(
    "h5ad-gzip-median|csr_gzip.h5ad csr_gzip.h5ad --threads 2"
    "h5ad-small-chunks-ehe|csr_small_chunks.h5ad small.h5ad --exclude-highly-expressed --key-added sf --threads 2"
    "h5ad-fletcher32-median|fletcher32.h5ad f32.h5ad --threads 2"
    "h5ad-fletcher32-fused|fletcher32.h5ad f32_fused.h5ad --target-sum 1e4 --threads 1"
    "h5ad-dense|dense.h5ad dense.h5ad --threads 2 --block-values 5000"
    "h5ad-csc-int|csc_int.h5ad csc.h5ad --target-sum 1e4 --threads 2"
    "h5ad-lzf-to-zarr|synth_lzf.h5ad synth.zarr --threads 2"
    "zarr-v3-sharded|v3_sharded.zarr v3.zarr --threads 2"
    "zarr-v2-to-h5ad|v2.zarr v2.h5ad --threads 2 --block-values 4000"
    "zarr-v2-recode-v3|v2.zarr v2_to_v3.zarr --zarr-format 3 --zarr-codec blosc-zstd:3 --threads 2"
)

mkdir -p "$WORK/out" "$WORK/log"
run_case() {
    local name=${1%%|*} args=${1#*|}
    local -a a
    read -r -a a <<<"$args"
    local log="$WORK/log/$name.log"
    # --error-exitcode: any memcheck error fails the case, whatever atlasnorm's own status.
    if valgrind --tool=memcheck --error-exitcode=97 --leak-check=no --num-callers=40 \
        --suppressions="$SUPP" --log-file="$log.vg" \
        "$BIN" normalize "$WORK/in/${a[0]}" "$WORK/out/${a[1]}" "${a[@]:2}" --quiet >"$log" 2>&1; then
        echo "valgrind: ok    $name"
    else
        local rc=$?
        echo "valgrind: FAIL  $name (exit $rc)"
        sed -n '1,200p' "$log" "$log.vg" | grep -v '^==[0-9]*== *$' | head -80
        return 1
    fi
}
export -f run_case
export WORK BIN SUPP

status=0
printf '%s\n' "${CASES[@]}" | xargs -d '\n' -P "$JOBS" -I{} bash -c 'run_case "$1"' _ {} || status=1
echo "valgrind: ${#CASES[@]} cases in $(( $(date +%s) - start )) s"
exit $status
