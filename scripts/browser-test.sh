#!/usr/bin/env bash
# The browser test: JupyterLab on localhost, the tutorial opened in headless Chromium, all cells
# run with the Rust kernel, plots checked. Needs scripts/install-kernel.sh first; installs Debian's
# chromium and playwright-core (npm) when missing. Screenshots: tests/browser/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x /usr/bin/chromium ]]; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --silent)
node tests/browser/run.mjs
