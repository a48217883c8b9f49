#!/usr/bin/env bash
# Runs every test on a fresh machine: fetches the default model and PyPI torch (for the LibTorch
# backend test), then the workspace tests in release mode, then the LibTorch comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

scripts/fetch-model.sh
scripts/venv.sh scripts/requirements-torch.txt

echo "== cargo test (flex backend) =="
cargo test --release --workspace

echo "== cargo test --features tch (LibTorch CPU vs flex) =="
# shellcheck source=scripts/tch-env.sh
. scripts/tch-env.sh
cargo test --release -p llama --features tch --test backends
