#!/usr/bin/env bash
# Fuzzes the parsers that read untrusted input with libFuzzer (+ ASan/UBSan),
# built by the "asan" preset in build-asan/: tar + WebDataset grouping,
# safetensors, the YAML config binder, the tokenizer, the image decoders.
# Each target starts from its seeds in tests/fuzz/corpus/<target> (plus what
# earlier runs found, kept in build-asan/fuzz/corpus/<target>) and runs for
# SECONDS; any crash, sanitizer report, leak, timeout or out-of-memory fails
# the script, and the input that caused it is left in build-asan/fuzz/artifacts/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   (default: 30 s each, all targets)
#
# Reproduce a finding:  build-asan/fuzz/<target> build-asan/fuzz/artifacts/<file>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-30}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(tar_fuzz safetensors_fuzz config_fuzz tokenizer_fuzz image_fuzz)
fi
jobs=${CLIPSCALE_JOBS:-$(nproc)}
if [ ! -f build-asan/build.ninja ]; then
  log=$(mktemp)
  cmake --preset asan >"$log" 2>&1 || { cat "$log"; exit 1; }
  rm -f "$log"
fi
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "$t"); done
cmake --build --preset asan -j "$jobs" "${build_targets[@]}"

out=build-asan/fuzz
mkdir -p "$out/artifacts" "$out/logs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export CLIPSCALE_DATA_DIR=${CLIPSCALE_DATA_DIR:-$PWD/build-asan/share/clipscale}

run_one() {
  local t=$1
  mkdir -p "$out/corpus/$t"
  # -timeout: one input running this long is a hang; -rss_limit_mb: the 537 MB
  # that kMaxImagePixels allows, under ASan, fits; more is a bug.
  "$out/$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=3072 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" \
    "$out/corpus/$t" "tests/fuzz/corpus/$t" >"$out/logs/$t.log" 2>&1
}

# Two targets at a time on two cores; each one's log is summarised when it ends.
declare -A pids
for t in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs)); do sleep 1; done
  run_one "$t" &
  pids[$t]=$!
done
failed=()
for t in "${targets[@]}"; do
  if wait "${pids[$t]}"; then status=ok; else status=FAILED; failed+=("$t"); fi
  log=$out/logs/$t.log
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  echo "fuzz: $t: $status, ${runs:-?} inputs in ${seconds} s (${rate:-?}/s), ${cov:-cov: ?}, ${ft:-ft: ?}"
  if [ "$status" != ok ]; then tail -n 40 "$log"; fi
done
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $out/artifacts/, logs in $out/logs/)"
  exit 1
fi
echo "fuzz: ok (${#targets[@]} targets, ${seconds} s each)"
