#!/usr/bin/env bash
# The main job, from a fresh clone: set up, build, and run `atlasnorm normalize`.
#   ./run.sh                       synthesize a demo input and normalize it (demo/...)
#   ./run.sh INPUT OUTPUT [opts]   normalize INPUT into OUTPUT (any `atlasnorm normalize` options)
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
scripts/build.sh
bin=target/release/atlasnorm
if [ "$#" -eq 0 ]; then
  mkdir -p demo
  [ -f demo/demo.h5ad ] || "$bin" synth demo/demo.h5ad --profile demo --seed 1
  exec "$bin" normalize demo/demo.h5ad demo/demo.norm.h5ad --key-added norm_factor --force
fi
exec "$bin" normalize "$@"
