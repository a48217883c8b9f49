#!/usr/bin/env bash
# Executes notebooks with the Rust kernel (headless), failing on any error: a compile error, a
# panic (the notebooks set `:preserve_vars_on_panic 0`, so a panic is an error) or an Err.
#   scripts/run-notebooks.sh [--check] [notebooks/das_tutorial.ipynb ...]
# Without --check each notebook is written back with its outputs, plus an HTML copy in
# notebooks/html/. With --check (CI) the executed copy goes to notebooks/*.check.ipynb
# (git-ignored) and the committed notebooks are left as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
export JUPYTER_PATH="$PWD/.venv/share/jupyter"
check=0
if [[ "${1:-}" == "--check" ]]; then check=1; shift; fi
nbs=("$@")
[[ ${#nbs[@]} -gt 0 ]] || nbs=(notebooks/das_tutorial.ipynb notebooks/ravel.ipynb)
for nb in "${nbs[@]}"; do
  echo "== executing $nb"
  start=$(date +%s)
  if [[ $check == 1 ]]; then
    out=(--output "$(basename "${nb%.ipynb}").check.ipynb")
  else
    out=(--inplace)
  fi
  # The kernel starts in the notebook's folder, so `:dep ../crates/subspace` resolves.
  .venv/bin/jupyter nbconvert --to notebook --execute "${out[@]}" \
    --ExecutePreprocessor.kernel_name=rust --ExecutePreprocessor.timeout=3600 \
    --ExecutePreprocessor.startup_timeout=120 "$nb"
  if [[ $check == 0 ]]; then
    .venv/bin/jupyter nbconvert --to html "$nb" --output-dir notebooks/html >/dev/null 2>&1
  fi
  echo "== $nb executed in $(( $(date +%s) - start )) s"
done

# No crate the stubs in notebooks/kernel-stubs stand in for may come from the registry in the
# kernel's Cargo.lock (a stub left unused by a version change means the kernel loads that
# crate's whole subtree into rust-analyzer again: ~15 s more per kernel start).
python3 - <<'PY'
import os, sys, tomllib
lock = tomllib.load(open("notebooks/.evcxr-build/Cargo.lock", "rb"))
from_registry = {p["name"] for p in lock["package"] if "source" in p}
stubs = {d for d in os.listdir("notebooks/kernel-stubs") if os.path.isdir(f"notebooks/kernel-stubs/{d}")}
bypassed = sorted(stubs & from_registry)
if bypassed:
    sys.exit(f"the kernel builds the real {bypassed} instead of their stubs: run python3 scripts/make-kernel-stubs.py")
print(f"== the kernel's crate graph keeps out the {len(stubs)} stubbed crates")
PY
