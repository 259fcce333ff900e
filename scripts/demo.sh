#!/usr/bin/env bash
# The README's main job: set up, build, write the embedded demo dataset (drawn
# scenes with captions, as WebDataset shards) if absent, train a small CLIP on
# CPU data-parallel over 2 MPI ranks (CLIPSCALE_DEMO_RANKS), and evaluate
# zero-shot classification and retrieval on held-out scenes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/build.sh clipscale
clipscale=build/bin/clipscale
data=${CLIPSCALE_DEMO_DATA:-demo_data}
# Written again when absent or written with other arguments (an older demo).
synth_args="--train 4000 --val 600 --seed 0 --varied-captions"
if [ ! -f "$data/val/classnames.txt" ] || [ "$(cat "$data/synth_args" 2>/dev/null)" != "$synth_args" ]; then
  # An older demo dataset (it has classnames.txt) goes first, so no shard of it stays behind.
  if [ -f "$data/val/classnames.txt" ]; then rm -rf "$data/train" "$data/val"; fi
  # shellcheck disable=SC2086  # the arguments are meant to split
  "$clipscale" data synth --out "$data" $synth_args
  echo "$synth_args" > "$data/synth_args"
fi
ranks=${CLIPSCALE_DEMO_RANKS:-2}
# Open MPI refuses root without --allow-run-as-root; --oversubscribe lets 2 ranks
# share a machine with fewer cores. Each rank then takes its share of the cores.
mpirun --allow-run-as-root --oversubscribe -np "$ranks" \
  "$clipscale" train --config configs/demo.yaml --set data.train="$data/train" \
  --set data.val="$data/val" "$@"
