#!/usr/bin/env bash
# The recipe chosen on val (`subspace ravel`'s defaults), three seeds, layer 15; the seed-0 run is
# saved to data/results/ravel_<method>_layer15_dims<D>.safetensors (D: `--dims`, given as DIMS,
# default 192; what notebooks/ravel.ipynb loads). Each run's JSON line goes to
# data/results/ravel_recipe.jsonl. RESULTS.md, "Choosing the recipe on val". ~13 min per MDAS
# run, ~8 per DAS run on 2 cores at 192 dims.
#   [DIMS=D] scripts/ravel-recipe.sh [das|mdas ...]   (default: mdas)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/subspace
[[ -x $bin ]] || cargo build --release -p subspace-cli
dims=${DIMS:-192}
methods=("$@")
[[ ${#methods[@]} -gt 0 ]] || methods=(mdas)
for method in "${methods[@]}"; do
  for seed in 0 1 2; do
    save=()
    [[ $seed == 0 ]] && save=(--save "data/results/ravel_${method}_layer15_dims${dims}.safetensors")
    echo "== $method seed $seed" >&2
    start=$(date +%s)
    line=$(RAYON_NUM_THREADS=2 "$bin" ravel --method "$method" --layer 15 --dims "$dims" --seed "$seed" "${save[@]}" --json)
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.pop("losses",None); r["wall_seconds"]=int(sys.argv[2]); print(json.dumps(r,sort_keys=True))' \
      "$line" "$(( $(date +%s) - start ))" >> data/results/ravel_recipe.jsonl
    tail -1 data/results/ravel_recipe.jsonl >&2
  done
done
