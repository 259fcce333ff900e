#!/usr/bin/env bash
# The README's main job: set up, build, write the embedded demo dataset (drawn
# scenes with captions, as WebDataset shards) if absent, train the tiny CLIP on
# CPU, and evaluate zero-shot classification and retrieval on held-out scenes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/build.sh clipscale
clipscale=build/bin/clipscale
data=${CLIPSCALE_DEMO_DATA:-demo_data}
if [ ! -f "$data/val/classnames.txt" ]; then
  "$clipscale" data synth --out "$data" --train 4000 --val 600 --seed 0
fi
"$clipscale" train --config configs/demo.yaml --set data.train="$data/train" \
  --set data.val="$data/val" "$@"
