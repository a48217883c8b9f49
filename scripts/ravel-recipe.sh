#!/usr/bin/env bash
# The recipe chosen on val (`subspace ravel`'s defaults), three seeds, layer 15, at DIMS
# dimensions (default 192): scripts/ravel-layers.sh once per seed, with the JSON lines going to
# data/results/ravel_recipe.jsonl; the seed-0 run is then copied to
# data/results/ravel_<method>_layer15_dims<D>.safetensors (what notebooks/ravel.ipynb loads).
# docs/history/RESULTS-sessions.md, "Choosing the recipe on val". ~13 min per MDAS run, ~8 per DAS run on 2 cores.
#   [DIMS=D] scripts/ravel-recipe.sh [das|mdas ...]   (default: mdas)
set -euo pipefail
cd "$(dirname "$0")/.."
dims=${DIMS:-192}
methods=("$@")
[[ ${#methods[@]} -gt 0 ]] || methods=(mdas)
for method in "${methods[@]}"; do
  for seed in 0 1 2; do
    SEED=$seed JSONL=data/results/ravel_recipe.jsonl scripts/ravel-layers.sh "$method" "$dims" 15
  done
  cp "target/ravel-layers/ravel_${method}_layer15_dims${dims}.safetensors" data/results/
done
