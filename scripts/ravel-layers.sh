#!/usr/bin/env bash
# The recipe's layer and size, chosen on val (docs/history/RESULTS-sessions.md): one run of METHOD with `subspace
# ravel`'s defaults at DIMS dimensions for each LAYER, seed $SEED (default 0; other seeds get a
# _seed<S> suffix on the saved file). Each run is saved to
# target/ravel-layers/ravel_<method>_layer<L>_dims<D>.safetensors (rescored later with
# `subspace ravel-score`) and its JSON line, with its wall time, appended to $JSONL (default
# data/results/ravel_layers.jsonl). ~9 min per MDAS run on 2 cores.
#   [SEED=S] [JSONL=FILE] scripts/ravel-layers.sh METHOD DIMS LAYER...   e.g. scripts/ravel-layers.sh mdas 64 15 18
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 3 ]] || { sed -n 2,8p "$0" >&2; exit 2; }
method=$1 dims=$2 seed=${SEED:-0} jsonl=${JSONL:-data/results/ravel_layers.jsonl}
shift 2
bin=${SUBSPACE_BIN:-target/release/subspace}
[[ -x $bin ]] || cargo build --release -p subspace-cli
mkdir -p target/ravel-layers
for layer in "$@"; do
  save=target/ravel-layers/ravel_${method}_layer${layer}_dims${dims}$([[ $seed == 0 ]] || echo "_seed$seed").safetensors
  echo "== $method layer $layer, $dims dims, seed $seed" >&2
  start=$(date +%s)
  line=$(RAYON_NUM_THREADS=2 "$bin" ravel --method "$method" --layer "$layer" --dims "$dims" --seed "$seed" --save "$save" --json)
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.pop("losses",None); r["wall_seconds"]=int(sys.argv[2]); print(json.dumps(r,sort_keys=True))' \
    "$line" "$(( $(date +%s) - start ))" >> "$jsonl"
  tail -1 "$jsonl" >&2
done
