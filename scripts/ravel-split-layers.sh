#!/usr/bin/env bash
# Where does the model read the city? Residual patching of the city's last token, on RAVEL's
# model-labelled pairs of each split kind, at each layer given: one JSON line per run appended
# to data/results/ravel_split_kinds_layers.jsonl (docs/history/RESULTS-sessions.md, "By layer, on RAVEL's labels").
# About 2 minutes a run on 2 cores (no training; 256 train pairs are only scored).
# UNIT=span edits every token of the city's name instead.
#   [KINDS="context entity"] [METHOD=residual] [UNIT=span] scripts/ravel-split-layers.sh 3 6 9 12
set -euo pipefail
cd "$(dirname "$0")/.."
kinds=${KINDS:-context entity}
method=${METHOD:-residual}
unit=${UNIT:-last_token}
out=data/results/ravel_split_kinds_layers.jsonl
for kind in $kinds; do
  for layer in "$@"; do
    echo "== $method, $kind split, layer $layer, $unit" >&2
    line=$(target/release/subspace ravel --method "$method" --layer "$layer" --split-kind "$kind" \
      --unit "$unit" --train-pairs 256 --json)
    printf '%s\n' "$line" >> "$out"
  done
done
