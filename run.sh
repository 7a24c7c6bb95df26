#!/usr/bin/env bash
# The main job: set up the environment, start a local Prefect server, run `dvc repro`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
source scripts/prefect_env.sh

if [ -z "${PREFECT_API_URL:-}" ]; then
  # One local server for the whole pipeline: each flow process then connects in
  # milliseconds instead of starting its own temporary server (about 10 s each).
  mkdir -p .slowfast
  port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  prefect server start --host 127.0.0.1 --port "$port" > .slowfast/prefect-server.log 2>&1 &
  server_pid=$!
  trap 'kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true' EXIT
  export PREFECT_API_URL="http://127.0.0.1:$port/api"
  python scripts/wait_for_url.py "$PREFECT_API_URL/health" 60 || { echo "error: Prefect server did not start; see .slowfast/prefect-server.log" >&2; exit 1; }
fi

export SLOWFAST_MAIN_JOB=1
dvc repro "$@"
echo
python -m flows.report
