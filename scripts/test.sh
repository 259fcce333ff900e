#!/usr/bin/env bash
# The README's test command: sets up, builds, and runs every test (unit, parity
# against open_clip in the venv, multi-rank MPI). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --preset default -j "${CLIPSCALE_JOBS:-$(nproc)}" "$@"
