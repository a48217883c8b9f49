#!/usr/bin/env bash
# Opens JupyterLab on notebooks/ with the Rust kernel (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export JUPYTER_PATH="$PWD/.venv/share/jupyter"
exec .venv/bin/jupyter lab --notebook-dir=notebooks "$@"
