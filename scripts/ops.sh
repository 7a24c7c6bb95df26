#!/usr/bin/env bash
# The scheduled live loop on this machine: a local Prefect server, the `slowfast` process
# work pool, every deployment in prefect.yaml and a worker, all in the background.
#   scripts/ops.sh up       start (first run: `dvc repro pretrain` for the slow model)
#   scripts/ops.sh status   deployments, recent flow runs, the live state
#   scripts/ops.sh down     stop the worker and the server
# Logs and pids: .slowfast/ops-run/. Prefect UI: http://127.0.0.1:${SLOWFAST_PREFECT_PORT:-4200}
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prefect_env.sh
run_dir=.slowfast/ops-run
port="${SLOWFAST_PREFECT_PORT:-4200}"
export PREFECT_API_URL="http://127.0.0.1:$port/api" SLOWFAST_ROOT="$PWD"
mkdir -p "$run_dir"

alive() { [ -f "$run_dir/$1.pid" ] && kill -0 "$(cat "$run_dir/$1.pid")" 2>/dev/null; }

up() {
  scripts/setup.sh
  if ! alive server; then
    setsid prefect server start --host 127.0.0.1 --port "$port" > "$run_dir/server.log" 2>&1 &
    echo $! > "$run_dir/server.pid"
  fi
  python scripts/wait_for_url.py "$PREFECT_API_URL/health" 90 \
    || { echo "error: Prefect server did not start; see $run_dir/server.log" >&2; exit 1; }
  if [ ! -f models/slow/model.pt ]; then
    echo "No slow model yet: dvc repro pretrain"
    dvc repro pretrain
  fi
  prefect work-pool inspect slowfast > /dev/null 2>&1 || prefect work-pool create slowfast --type process > /dev/null
  prefect --no-prompt deploy --all > "$run_dir/deploy.log" 2>&1 \
    || { echo "error: prefect deploy failed; see $run_dir/deploy.log" >&2; exit 1; }
  if ! alive worker; then
    # its own process group: `down` stops the worker and the flow runs it started together
    PREFECT_LOGGING_LEVEL=INFO setsid prefect worker start --pool slowfast --type process > "$run_dir/worker.log" 2>&1 &
    echo $! > "$run_dir/worker.pid"
    for _ in $(seq 1 120); do  # report only a worker that is polling the pool
      grep -q "started!" "$run_dir/worker.log" && break
      alive worker || { echo "error: the worker exited at start; see $run_dir/worker.log" >&2; exit 1; }
      sleep 0.5
    done
    grep -q "started!" "$run_dir/worker.log" || { echo "error: the worker did not start in 60 s; see $run_dir/worker.log" >&2; exit 1; }
  fi
  echo "Prefect UI:  http://127.0.0.1:$port   (export PREFECT_API_URL=$PREFECT_API_URL)"
  echo "Deployments: ingest (hourly), fast-adapt (every 15 min), consolidate (02:00), pretrain-slow (Sun 03:00),"
  echo "             slow-fast-loop and compare (manual). Run one now: prefect deployment run 'ingest/ingest'"
  echo "Worker log:  $run_dir/worker.log"
}

# Stop a process group started by `up` and report only once it is gone. Prefect's worker
# answers a first SIGTERM with a graceful shutdown that can hang (seen alive minutes later)
# and a second one by killing itself; whatever is left after that is killed.
stop() {
  local name=$1 pid round
  if ! alive "$name"; then rm -f "$run_dir/$name.pid"; return; fi
  pid=$(cat "$run_dir/$name.pid")
  for round in TERM TERM KILL; do
    kill "-$round" -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 -- "-$pid" 2>/dev/null || break 2
      sleep 0.5
    done
  done
  if kill -0 -- "-$pid" 2>/dev/null; then
    echo "error: $name (pid $pid) is still running after SIGKILL" >&2
    return 1
  fi
  echo "stopped $name (pid $pid)"
  rm -f "$run_dir/$name.pid"
}

down() {
  stop worker
  stop server
}

status() {
  alive server || { echo "server: not running (scripts/ops.sh up)"; exit 1; }
  if alive worker; then echo "worker: running (pid $(cat "$run_dir/worker.pid"))"; else echo "worker: not running"; fi
  python scripts/ops_status.py
  python -c 'from components.config import load_params; from components.ops.state import load_ops_state, summary_line
p = load_params("params.yaml"); s = load_ops_state(f".slowfast/ops/{p.stream.name}")
print(summary_line(s) if s else "live loop: not started (run the ingest deployment)")'
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: scripts/ops.sh up|status|down" >&2; exit 2 ;;
esac
