#!/usr/bin/env bash
# Configures and builds clipscale (preset "default": CPU, with the CUDA/NCCL code
# compiled and linked when the toolkit is present). Run scripts/setup.sh first.
#   scripts/build.sh [TARGET...]    (default: everything, tests and benchmarks too)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=${CLIPSCALE_JOBS:-$(nproc)}
if [ ! -f build/build.ninja ]; then
  log=$(mktemp)
  cmake --preset default >"$log" 2>&1 || { cat "$log"; exit 1; }
  rm -f "$log"
fi
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build --preset default -j "$jobs" "${targets[@]}"
