#!/usr/bin/env bash
# Installs what the notebooks need: evcxr_jupyter (pinned; skipped when that version is already
# installed), JupyterLab and nbconvert in .venv (pinned), and the Rust kernel registered inside
# .venv (not in the user's global Jupyter).
set -euo pipefail
cd "$(dirname "$0")/.."
EVCXR_VERSION=0.22.0

# evcxr's type inference (rust-analyzer) reads the standard library's sources.
if ! [[ -d "$(rustc --print sysroot)/lib/rustlib/src/rust" ]]; then
  rustup component add rust-src || echo "warning: could not add rust-src; evcxr may fail to infer some variable types" >&2
fi
if ! cargo install --list | grep -q "^evcxr_jupyter v$EVCXR_VERSION:"; then
  echo "installing evcxr_jupyter $EVCXR_VERSION (a cold build takes 10-20 minutes on 2 cores)"
  cargo install --locked "evcxr_jupyter@$EVCXR_VERSION"
fi
# The kernel's build folder starts from the workspace's Cargo.lock, so the notebooks compile the
# tests' crate versions (not whatever crates.io has that day) and the stubs in
# notebooks/kernel-stubs match them. (cargo re-resolves the few packages whose only dependents
# are stubbed crates: ~10 small ones, e.g. cubecl-common, may come out newer.)
if ! [[ -f notebooks/.evcxr-build/Cargo.lock ]]; then
  mkdir -p notebooks/.evcxr-build
  cp Cargo.lock notebooks/.evcxr-build/Cargo.lock
fi
scripts/venv.sh scripts/requirements-notebooks.txt
JUPYTER_PATH="$PWD/.venv/share/jupyter" "$HOME/.cargo/bin/evcxr_jupyter" --install >/dev/null
# --install writes into the first JUPYTER_PATH entry; make sure it landed in the venv.
test -f .venv/share/jupyter/kernels/rust/kernel.json
echo "Rust kernel registered in .venv/share/jupyter"
