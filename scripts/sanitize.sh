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
skipped=build-asan/Testing/skipped  # reasons written by tests that skip (tests/test_main.cc)
rm -rf "$skipped"
status=0
ctest --preset asan -j "$jobs" "$@" || status=$?
if compgen -G "$skipped/*" >/dev/null; then
  echo "Skipped under ASan/UBSan (ctest entry: test: reason):"
  for file in "$skipped"/*; do sed "s|^|  $(basename "$file"): |" "$file"; done | sort -u
fi
exit "$status"
