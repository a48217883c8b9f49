#!/usr/bin/env bash
# Issue #44's second step: what residual patching (the whole vector) moves on the model-labelled
# pairs by layer, with RAVEL's sources (any template of the split) and with the source city read
# from the base's own template (the same pairs and targets; what the site itself can move),
# the city's last token and its whole name. One JSON line per run, appended to
# data/results/ravel_site_ceiling.jsonl (finished runs are skipped).
#   scripts/ravel-site-ceiling.sh [LAYER ...]     (default 0 3 6 9 12 15 18)
# About 20 s a run on 2 cores (32 train pairs scored, 200 + 200 val and test pairs).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/subspace
out=data/results/ravel_site_ceiling.jsonl
layers=("$@")
[[ ${#layers[@]} -gt 0 ]] || layers=(0 3 6 9 12 15 18)
touch "$out"
for kind in context entity; do
  for sources in any_template base_template; do
    for unit in last_token span; do
      for layer in "${layers[@]}"; do
        key="\"layer\": *$layer,.*\"split_kind\": *\"$kind\".*\"sources\": *\"$sources\".*\"unit\": *\"$unit\""
        if grep -q "$key" "$out" 2>/dev/null; then continue; fi
        line=$("$bin" ravel --method residual --layer "$layer" --split-kind "$kind" \
          --sources "$sources" --unit "$unit" --seed 0 --train-pairs 32 --json 2>/dev/null)
        python3 -c '
import json, sys
r = json.loads(sys.argv[1]); c = r["config"]
print(json.dumps({"layer": r["layer"], "split_kind": c["split_kind"], "sources": c["sources"],
    "unit": c["unit"], "test": r["test"], "val": r["val"]}, separators=(",", ":")))' "$line" >> "$out"
        echo "$kind $sources $unit layer $layer: test Cause $(tail -1 "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["test"]["cause"])')"
      done
    done
  done
done
