#!/usr/bin/env bash
# The README's test command: sets up, builds, and runs every test (unit, parity
# against open_clip in the venv, multi-rank MPI). Exits non-zero on any failure.
# Its last lines list the tests that were skipped (ctest: "Skipped") and why.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/build.sh
skipped=build/Testing/skipped  # each skipping ctest entry writes its reasons here
rm -rf "$skipped"
status=0
ctest --preset default -j "${CLIPSCALE_JOBS:-$(nproc)}" "$@" || status=$?
bash scripts/sanitize.sh || status=$?  # core/ and data/ tests under ASan + UBSan (build-asan/)
bash scripts/fuzz.sh "${CLIPSCALE_FUZZ_SECONDS:-30}" || status=$?  # each fuzz target, 30 s
if compgen -G "$skipped/*" >/dev/null; then
  echo "Skipped tests and why (ctest entry: test: reason):"
  for file in "$skipped"/*; do
    entry=$(basename "$file")
    sed "s|^|  ${entry%.rank*}: |" "$file"  # under mpiexec every rank writes a copy
  done | sort -u
fi
exit "$status"
