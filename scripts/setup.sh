#!/usr/bin/env bash
# Create .venv and install the pinned environment; a no-op when requirements.lock is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-}
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python_bin=$candidate; break
    fi
  done
fi
[ -n "$python_bin" ] || { echo "error: slowfast needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 2; }

stamp=".venv/.installed-$(sha256sum requirements.lock | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Setting up .venv (first run takes a few minutes)..."
  [ -x .venv/bin/python ] || "$python_bin" -m venv .venv
  log=.venv/install.log
  if ! .venv/bin/python -m pip install --disable-pip-version-check -r requirements.lock > "$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "error: installing requirements.lock failed; full log in $log" >&2
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
