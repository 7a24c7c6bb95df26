"""The process that runs the pipeline's Dask cluster (adapters/pipeline_cluster.py says
what it is for and how a stage finds it): ./run.sh starts
`python -m adapters.pipeline_cluster_server STATE_FILE PORT RUN_PID [PARAMS_FILE]`.
Apart from that module because it imports the units' whole stack; stages import only that one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.pipeline_cluster import LOG, STARTUP_SECONDS, PipelineClusterFailed, alive, shape, started_state
from components.config import ParallelParams, load_params
from components.errors import SlowfastError


def _write(path: Path, state: dict[str, Any]) -> None:
    """Atomically: a stage polling the file never reads half of it."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(state))
    partial.replace(path)


def serve(path: Path, port: int, run_pid: int, params_file: Path | None = None) -> None:
    """Start the cluster `params_file` (this checkout's params.yaml) asks for, write its state,
    and keep it until SIGTERM or until process `run_pid` (./run.sh) is gone."""
    _write(path, {"state": "starting", "pid": os.getpid()})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    import flows  # noqa: F401  (quiet defaults and DASK_CONFIG, before Dask, Prefect or MLflow are imported)

    from adapters import dask_cluster
    from components.layout import REPO_ROOT
    from components.runtime import pick_device

    try:
        params = load_params(params_file or REPO_ROOT / "params.yaml")
        device = pick_device(params.device)
    except SlowfastError as error:  # the stages report it too, each in its own words
        _write(path, {"state": "off", "why": str(error)})
        return
    uri, api = os.environ.get("MLFLOW_TRACKING_URI", ""), os.environ.get("PREFECT_API_URL", "")
    if why := _why_off(params.parallel, uri, api):
        _write(path, {"state": "off", "why": why})
        return
    from distributed import LocalCluster

    env = dask_cluster.worker_env(uri, api, params.threads)
    kwargs = dask_cluster.local_cluster_kwargs(params.parallel, device, env)
    workers = kwargs.pop("n_workers")
    # The scheduler listens at once; the workers start (their fork server importing the
    # stack) while this process imports what the scheduler unpickles from each stage's units.
    cluster = LocalCluster(n_workers=0, host="127.0.0.1", scheduler_port=port, **kwargs)
    try:
        cluster.scale(workers)
        import adapters.dask_scheduler  # noqa: F401
        _write(path, {"state": "ready", "address": cluster.scheduler_address, "pid": os.getpid(),
                      "shape": shape(workers, params.parallel.threads_per_worker, env)})
        while not stop.wait(0.5) and alive(run_pid):
            pass
    finally:
        cluster.close(timeout=10)


def _why_off(parallel: ParallelParams, tracking_uri: str, prefect_api: str) -> str:
    """Why no pipeline cluster is started ("" when one is): the stages then run as alone."""
    if parallel.scheduler or parallel.workers <= 0:
        return "params.yaml parallel: names no local cluster"
    if not tracking_uri.startswith(("http", "postgresql")):
        return "no tracking server to share (MLFLOW_TRACKING_URI is not a server)"
    if not prefect_api:
        return "no Prefect API to share (PREFECT_API_URL unset)"
    return ""


@contextlib.contextmanager
def running(state_file: Path, params_file: Path, env: dict[str, str], workers: int,
            cwd: Path | None = None) -> Iterator[dict[str, Any]]:
    """The cluster started as ./run.sh starts it (from checkout `cwd`), for `params_file`,
    with `env` (the stores and Prefect API), until the block ends: its ready state, once
    `workers` have joined (benchmarks, where ./run.sh's earlier stages give it that time)."""
    from distributed import Client

    from adapters.servers import free_port
    from components.layout import REPO_ROOT

    state_file.write_text('{"state": "starting"}')
    with state_file.with_name(LOG).open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", __name__, str(state_file), str(free_port()),
                                    str(os.getpid()), str(params_file)], cwd=cwd or REPO_ROOT, env=os.environ | env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        state = started_state(state_file)
        if state["state"] != "ready":
            raise PipelineClusterFailed(f"{state}; see {state_file.with_name(LOG)}")
        with Client(state["address"], timeout=60) as client:
            client.wait_for_workers(workers, timeout=STARTUP_SECONDS)
        yield state
    finally:
        process.terminate()
        process.wait(timeout=60)


if __name__ == "__main__":
    state_file = Path(sys.argv[1])
    try:
        serve(state_file, int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
    except Exception as error:  # noqa: BLE001  (reported to the stages through the state file, and here)
        _write(state_file, {"state": "failed", "error": f"{type(error).__name__}: {error}".splitlines()[0]})
        raise
