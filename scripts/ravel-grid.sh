#!/usr/bin/env bash
# The val grid behind `subspace ravel`'s training defaults (docs/history/RESULTS-sessions.md, "Choosing the recipe on
# val"): layer 15, 16 dims, 1024 train pairs, seed 0, each run's JSON line (settings included)
# appended to data/results/ravel_grid.jsonl. ~10 min per MDAS run, ~7 per DAS run on 2 cores.
#   scripts/ravel-grid.sh [RUN_NAME ...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/subspace
[[ -x $bin ]] || cargo build --release -p subspace-cli
# Every setting spelled out (not left to the defaults, which these runs chose).
common=(--layer 15 --train-pairs 1024 --batch 32 --json)
declare -A runs=(
  [mdas-warmup-linear]="--method mdas --warmup 0.1 --decay linear --steps 240 --dims 16 --lr 1e-3"
  [mdas-isolate-0.5]="--method mdas --isolate-weight 0.5 --steps 240 --dims 16 --lr 1e-3 --warmup 0 --decay constant"
  [mdas-warmup-linear-lr3e-3]="--method mdas --warmup 0.1 --decay linear --lr 3e-3 --steps 240 --dims 16"
  [das-warmup-linear]="--method das --warmup 0.1 --decay linear --steps 240 --dims 16 --lr 1e-3"
  [das-warmup-linear-lr3e-3]="--method das --warmup 0.1 --decay linear --lr 3e-3 --steps 240 --dims 16"
  [mdas-isolate-2]="--method mdas --isolate-weight 2 --steps 240 --dims 16 --lr 1e-3 --warmup 0 --decay constant"
  [mdas-warmup-linear-120-steps]="--method mdas --warmup 0.1 --decay linear --lr 3e-3 --steps 120 --dims 16"
  # The dims curve of the chosen DAS recipe, towards 576 (= residual patching).
  [das-dims-64]="--method das --dims 64 --lr 1e-3 --steps 240 --warmup 0 --decay constant"
  [das-dims-192]="--method das --dims 192 --lr 1e-3 --steps 240 --warmup 0 --decay constant"
)
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(mdas-warmup-linear mdas-isolate-0.5 mdas-warmup-linear-lr3e-3 das-warmup-linear
  das-warmup-linear-lr3e-3 mdas-isolate-2 mdas-warmup-linear-120-steps das-dims-64 das-dims-192)
for name in "${names[@]}"; do
  [[ -n "${runs[$name]:-}" ]] || { echo "unknown run $name" >&2; exit 2; }
  echo "== $name: ${runs[$name]}" >&2
  # shellcheck disable=SC2086
  line=$(RAYON_NUM_THREADS=2 "$bin" ravel ${runs[$name]} "${common[@]}")
  python3 -c 'import json,sys; r=json.loads(sys.argv[2]); r.pop("losses",None); r["run"]=sys.argv[1]; print(json.dumps(r,sort_keys=True))' "$name" "$line" >> data/results/ravel_grid.jsonl
  tail -1 data/results/ravel_grid.jsonl >&2
done
