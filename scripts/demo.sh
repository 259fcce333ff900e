#!/usr/bin/env bash
# The README's main job: set up, build, write the embedded demo dataset (drawn
# scenes with captions, as WebDataset shards) if absent, train the tiny CLIP on
# CPU data-parallel over 2 MPI ranks (CLIPSCALE_DEMO_RANKS), and evaluate
# zero-shot classification and retrieval on held-out scenes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/build.sh clipscale
clipscale=build/bin/clipscale
data=${CLIPSCALE_DEMO_DATA:-demo_data}
if [ ! -f "$data/val/classnames.txt" ]; then
  "$clipscale" data synth --out "$data" --train 4000 --val 600 --seed 0
fi
ranks=${CLIPSCALE_DEMO_RANKS:-2}
# Open MPI refuses root without --allow-run-as-root; --oversubscribe lets 2 ranks
# share a machine with fewer cores. Each rank then takes its share of the cores.
mpirun --allow-run-as-root --oversubscribe -np "$ranks" \
  "$clipscale" train --config configs/demo.yaml --set data.train="$data/train" \
  --set data.val="$data/val" "$@"
