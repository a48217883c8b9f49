#!/usr/bin/env bash
# Creates (once) the project virtualenv .venv and installs a pinned requirements file into it.
#   scripts/venv.sh scripts/requirements-torch.txt
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:?usage: scripts/venv.sh REQUIREMENTS_FILE}"
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=".venv/.installed-$(basename "$req")-$(sha256sum "$req" scripts/requirements-*.txt | sha256sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install --quiet -r "$req"
  touch "$stamp"
fi
