#!/usr/bin/env bash
# The RAVEL sweep: methods × layers × dims on SmolLM2, one JSON line per run, appended to
# data/results/ravel_sweep.jsonl (runs already there are skipped, so it can be resumed).
#   scripts/ravel-sweep.sh [STEPS] [TRAIN_PAIRS]
# Needs data/results/ravel_probe_smollm2.json (subspace ravel-probe).
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-100}"
train_pairs="${2:-256}"
out=data/results/ravel_sweep.jsonl
bin=./target/release/subspace
layers="${LAYERS:-0 3 6 9 12 15 18 21 24}"
dims_list="${DIMS:-1 4 16 64}"
methods="${METHODS:-residual neurons das mdas}"
touch "$out"
for layer in $layers; do
  for method in $methods; do
    for dims in $dims_list; do
      [[ "$method" == residual && "$dims" != "$(echo $dims_list | cut -d' ' -f1)" ]] && continue
      if grep -q "\"layer\":$layer," "$out" && grep "\"layer\":$layer," "$out" | grep "\"method\":\"$method\"" | grep -q "\"dims\":$([[ $method == residual ]] && echo null || echo $dims)[,}]"; then
        continue
      fi
      line=$($bin ravel --method "$method" --layer "$layer" --dims "$dims" --steps "$steps" \
        --train-pairs "$train_pairs" --json)
      echo "$line" | python3 -c "import json,sys; d=json.load(sys.stdin); d.pop('losses'); d['steps']=$steps; d['train_pairs']=$train_pairs; print(json.dumps(d, sort_keys=True))" >> "$out"
      echo "layer $layer $method dims $dims: $(tail -1 "$out" | cut -c1-160)"
    done
  done
done
