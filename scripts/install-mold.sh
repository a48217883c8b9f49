#!/usr/bin/env bash
# Installs the mold linker from Debian's packages where this machine can (root, apt-get), for
# scripts/linker-gcc. Optional: without it builds link with the default linker, only slower.
set -uo pipefail
command -v mold >/dev/null && exit 0
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "note: mold not installed (needs root and apt-get); linking with the default linker" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends mold >/dev/null 2>&1 ||
  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends mold >/dev/null 2>&1; } ||
  echo "note: could not install mold; linking with the default linker" >&2
command -v mold >/dev/null && echo "linker: $(mold --version)"
exit 0
