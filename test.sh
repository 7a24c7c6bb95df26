#!/usr/bin/env bash
# The whole test suite: set up the environment, then pytest (extra args go to pytest).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
source scripts/prefect_env.sh
exec python -m pytest "$@"
