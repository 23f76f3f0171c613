#!/usr/bin/env bash
# Sets up .venv in the checkout: Python 3.10, uv from PyPI, the locked stack
# (requirements/base.lock) and this package (editable). Idempotent: when the lock and
# setup.py are unchanged since the last successful setup, it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
SETUP_VERSION=2  # bump when this script's steps change, so that existing venvs run them
stamp=.venv/.official-tfx-setup
want=$( (echo "$SETUP_VERSION"; cat requirements/base.lock setup.py) | sha256sum | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

find_python310() {
  local candidate
  for candidate in python3.10 "$(command -v pyenv >/dev/null && pyenv root)"/versions/3.10.*/bin/python3.10; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if [[ ! -x .venv/bin/python ]]; then
  python=$(find_python310) || {
    echo "setup_env: no Python 3.10 found (TFX 1.16 needs 3.9-3.10): install python3.10 or pyenv 3.10.x" >&2
    exit 1
  }
  echo "setup_env: creating .venv with $python" >&2
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
echo "setup_env: installing requirements/base.lock" >&2
.venv/bin/uv pip install --quiet --python .venv/bin/python -r requirements/base.lock
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
# Bytecode for everything installed, once: with PYTHONDONTWRITEBYTECODE set (as on these machines)
# Python never caches it, and every process then compiles TF and TFX again (measured here:
# `import tfx.v1` 57 s without, 17 s with).
echo "setup_env: compiling bytecode" >&2
.venv/bin/python -m compileall -q -j 0 .venv/lib/python3.10/site-packages >/dev/null ||
  echo "setup_env: some files did not compile (they are imported from source)" >&2
echo "$want" > "$stamp"
echo "setup_env: ready (.venv)" >&2
