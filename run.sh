#!/usr/bin/env bash
# The main job: set up the environment, start a local Prefect server, run `dvc repro`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
source scripts/prefect_env.sh

free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
repro=""
# On the way out, however it comes (done, failed, Ctrl-C, `kill`): first the pipeline, while
# the servers it reports to are still up (stopped as a terminal's Ctrl-C stops it, then killed
# if it is still there after 20 s: a stage left running without its servers hung for minutes
# retrying them); then the servers. Each server runs in a process group of its own (setsid:
# the MLflow server and its uvicorn worker, the Dask scheduler and its workers) and is stopped
# as a group, all at once (the cluster takes about 3 s). `|| true`: under `set -e` the 143
# that `wait` returns for a stopped server would end the trap early, leaving the next server
# running and making ./run.sh exit 143 after a successful run.
group_ends() {  # whether process group $1 is gone within $2 tenths of a second (0: now)
  for _ in $(seq "$2"); do kill -0 -- "-$1" 2>/dev/null || return 0; sleep 0.1; done
  ! kill -0 -- "-$1" 2>/dev/null
}
stop() {
  if [ -n "$repro" ] && ! group_ends "$repro" 0; then
    kill -INT -- "-$repro" 2>/dev/null || true
    group_ends "$repro" 200 || kill -KILL -- "-$repro" 2>/dev/null || true
  fi
  for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # and the rest of each group (a worker's multiprocessing resource tracker outlives it by a
  # moment), so that nothing is left once this script has returned
  for p in "${pids[@]}"; do group_ends "$p" 50 || true; done
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
mkdir -p .slowfast
if [ -z "${PREFECT_API_URL:-}" ]; then
  # One local server for the whole pipeline: each flow process and Dask worker then connects
  # in milliseconds instead of starting its own temporary server (about 10 s each).
  port=$(free_port)
  setsid prefect server start --host 127.0.0.1 --port "$port" > .slowfast/prefect-server.log 2>&1 &
  pids+=($!)
  export PREFECT_API_URL="http://127.0.0.1:$port/api"
  wait_prefect=1
fi
if [ -z "${MLFLOW_TRACKING_URI:-}" ]; then
  # The sqlite store (mlflow.db) served by one process: the stream stage's workers write
  # concurrently, and sqlite takes one writer at a time. Started beside Prefect's server.
  port=$(free_port)
  export SLOWFAST_SERVED_STORE="sqlite:///$PWD/mlflow.db"
  setsid python -m adapters.servers "$port" > .slowfast/mlflow-server.log 2>&1 &
  pids+=($!)
  export MLFLOW_TRACKING_URI="http://127.0.0.1:$port"
  python scripts/wait_for_url.py "$MLFLOW_TRACKING_URI/health" 120 || { echo "error: MLflow server did not start; see .slowfast/mlflow-server.log" >&2; exit 1; }
fi
if [ -n "${wait_prefect:-}" ]; then
  python scripts/wait_for_url.py "$PREFECT_API_URL/health" 60 || { echo "error: Prefect server did not start; see .slowfast/prefect-server.log" >&2; exit 1; }
fi

if [ -z "${SLOWFAST_PIPELINE_CLUSTER:-}" ]; then
  # One Dask cluster for every stage that runs units (tune, stream, text): its workers import
  # their stack while the first stages run, once per pipeline (adapters/pipeline_cluster.py).
  state="$PWD/.slowfast/dask-cluster.json"
  echo '{"state": "starting"}' > "$state"
  setsid python -m adapters.pipeline_cluster_server "$state" "$(free_port)" $$ > .slowfast/dask-cluster.log 2>&1 &
  pids+=($!)
  export SLOWFAST_PIPELINE_CLUSTER="$state"
fi

export SLOWFAST_MAIN_JOB=1
# DVC's nine-line git hint folds into one line (the table below stays on screen); stderr and
# the exit status (pipefail) are DVC's own. Run as a job of its own (set -m: its own process
# group, Ctrl-C not ignored) and waited for, so that a signal reaches this script at once
# (bash runs traps only between commands, and `wait` is one) and `stop` ends the whole
# pipeline, DVC and the stage it runs.
set -m
(dvc repro "$@" | python -u scripts/fold_dvc_hints.py) &
repro=$!
set +m
wait "$repro"
echo
python -m flows.report
