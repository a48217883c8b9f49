#!/usr/bin/env bash
# Runs every test on a fresh machine: fetches the default model and PyPI torch (for the LibTorch
# backend test), runs the workspace tests in release mode, the Llama-3.2-1B-shaped checkpoint
# against transformers (written here, ~2 minutes), the LibTorch comparison, a short fuzz
# smoke of the file readers, then executes every notebook with the Rust kernel (installing
# evcxr_jupyter and JupyterLab first) and runs the tutorial in JupyterLab in headless Chromium.
# SUBSPACE_SKIP_NOTEBOOKS=1 skips the notebooks (they add ~20 minutes on a cold machine).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

scripts/install-mold.sh
scripts/fetch-model.sh
scripts/fetch-model.sh gemma3-270m
scripts/venv.sh scripts/requirements-torch.txt
scripts/venv.sh scripts/requirements-fuzz.txt
scripts/venv.sh scripts/requirements-ref.txt
# Fuzz seeds cut from the default model (git-ignored; the formats tests check them).
.venv/bin/python fuzz/make_seeds.py >/dev/null

echo "== the source tree's shape (import circles, file lengths, crate arrows) =="
python3 scripts/check-structure.py

echo "== cargo test (flex backend) =="
cargo test --release --workspace

echo "== the tutorial's scale: a Llama-3.2-1B-shaped bf16 checkpoint and its Q8_0 / Q4_K_M GGUF copies vs transformers =="
.venv/bin/python scripts/make-llama1b-shaped.py
cargo test --release -p subspace --test llama1b_shaped -- --ignored

echo "== cargo test --features tch (LibTorch CPU vs flex) =="
(
  # shellcheck source=scripts/tch-env.sh
  . scripts/tch-env.sh
  cargo test --release -p llama --features tch --test backends
)

echo "== fuzz smoke (30 s per target; RELIABILITY.md records the 10-minute runs) =="
scripts/fuzz.sh 30

if [[ "${SUBSPACE_SKIP_NOTEBOOKS:-0}" != 1 ]]; then
  echo "== notebooks (Rust kernel) =="
  scripts/install-kernel.sh
  scripts/run-notebooks.sh --check
  echo "== the stop button during a long call, in the Rust kernel =="
  .venv/bin/python tests/notebook_interrupt.py
  echo "== browser test (JupyterLab + headless Chromium) =="
  scripts/browser-test.sh
fi
