#!/usr/bin/env bash
# Executes notebooks in place with the Rust kernel (headless), failing on any error (a compile
# error or a panic), and writes an HTML copy next to each.
#   scripts/run-notebooks.sh [notebooks/das_tutorial.ipynb ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export JUPYTER_PATH="$PWD/.venv/share/jupyter"
# evcxr's compiled dependencies survive kernel restarts here (its :cache), and across runs.
export EVCXR_CACHE_DIR="${EVCXR_CACHE_DIR:-$HOME/.cache/evcxr}"
nbs=("$@")
[[ ${#nbs[@]} -gt 0 ]] || nbs=(notebooks/*.ipynb)
for nb in "${nbs[@]}"; do
  echo "== executing $nb"
  start=$(date +%s)
  # A failing cell (compile error, panic, Err) raises here and stops the script.
  .venv/bin/jupyter nbconvert --to notebook --execute --inplace \
    --ExecutePreprocessor.kernel_name=rust --ExecutePreprocessor.timeout=3600 \
    --ExecutePreprocessor.startup_timeout=120 "$nb"
  .venv/bin/jupyter nbconvert --to html "$nb" --output-dir notebooks/html >/dev/null 2>&1
  echo "== $nb executed in $(( $(date +%s) - start )) s"
done
