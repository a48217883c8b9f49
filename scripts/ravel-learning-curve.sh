#!/usr/bin/env bash
# #25's learning curve: the recipe (`subspace ravel`'s defaults: 192 dims at layer 15) on the
# entity split (held-out cities) trained on the first N of the split's train cities, for each
# N and seed given, one JSON line each appended to data/results/ravel_learning_curve.jsonl.
# docs/history/RESULTS-sessions.md, "How many train cities". About 3 minutes per MDAS run on 2 cores.
#   [SEEDS="0 1"] [METHOD=mdas] scripts/ravel-learning-curve.sh 100 200 ...
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${SEEDS:-0}
method=${METHOD:-mdas}
out=data/results/ravel_learning_curve.jsonl
for seed in $seeds; do
  for cities in "$@"; do
    echo "== $method, entity split, $cities train cities, seed $seed" >&2
    line=$(target/release/subspace ravel --method "$method" --layer 15 --split-kind entity \
      --train-cities "$cities" --seed "$seed" --json)
    # Appended only once the run has finished: a stopped run leaves no half line.
    printf '%s\n' "$line" >> "$out"
  done
done
