#!/usr/bin/env bash
# Builds core/ and data/ with clang's AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake preset "asan", folder build-asan/, no LibTorch) and runs their unit tests
# under them, including one pass of every fuzzer over its seed corpus.
# Any sanitizer report fails the test it happens in.
#   scripts/sanitize.sh [CTEST_ARGS...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=${CLIPSCALE_JOBS:-$(nproc)}
if [ ! -f build-asan/build.ninja ]; then
  log=$(mktemp)
  cmake --preset asan >"$log" 2>&1 || { cat "$log"; exit 1; }
  rm -f "$log"
fi
cmake --build --preset asan -j "$jobs"
ctest --preset asan -j "$jobs" "$@"
