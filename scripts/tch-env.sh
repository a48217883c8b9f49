# Source this file to build or run with `--features tch` (LibTorch through burn-tch):
#   . scripts/tch-env.sh
# It points the torch-sys build at the virtualenv's PyPI torch (scripts/setup.sh installs it)
# and puts torch's shared libraries on the loader path.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_root/.venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
_torch_lib="$("$_root/.venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
if [ -z "$_torch_lib" ]; then
  echo "tch-env: torch is not installed in $_root/.venv; run scripts/setup.sh first" >&2
else
  export LD_LIBRARY_PATH="$_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
unset _root _torch_lib
