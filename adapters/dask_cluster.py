"""The Dask cluster the stream stage's units run on, as a Prefect task runner (prefect-dask).

`params.yaml` `parallel:` chooses it: a local cluster of `workers` processes started with the
flow (the default), a running scheduler at `scheduler` (many machines), or none (`workers:
0`, every unit in the flow's own process). Worker processes live for the whole flow, so torch
and components/ are imported once per worker (`adapters.dask_worker`, preloaded), not once
per unit.

On a GPU machine the local cluster runs one worker per GPU (at most `workers`), and each
worker makes its own GPU the current device: "cuda" then means that worker's GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from prefect_dask import DaskTaskRunner

from adapters import fork_server
from adapters.servers import free_port
from components.config import ParallelParams
from components.errors import ParamsError
from components.layout import REPO_ROOT

WORKER_MODULE = fork_server.WORKER_MODULE
SCHEDULER_MODULE = "adapters.dask_scheduler"  # what a separate scheduler process unpickles, imported at its start
DASK_CONFIG = Path(__file__).resolve().parent / "dask_config"  # workers' settings (slowfast.yaml)


def local_worker_count(parallel: ParallelParams, device: torch.device) -> int:
    """Workers of the local cluster: `workers`, or one per GPU when units run on CUDA."""
    if device.type == "cuda":
        return max(1, min(parallel.workers, torch.cuda.device_count()))
    return parallel.workers


def worker_env(tracking_uri: str, prefect_api: str | None, threads: int) -> dict[str, str]:
    """What the local cluster's workers need from this process: the stores they report to,
    this checkout's Prefect settings, and OpenMP held to the unit's torch threads."""
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": str(max(threads, 1))}
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    for name in ("PREFECT_HOME", "PREFECT_LOGGING_LEVEL", "PREFECT_SERVER_ANALYTICS_ENABLED", "PYTHONPATH"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def uses_cluster(parallel: ParallelParams) -> bool:
    """False when every unit runs in the stage's own process (`workers: 0`, no scheduler)."""
    return bool(parallel.scheduler) or parallel.workers > 0


def task_runner(parallel: ParallelParams, device: torch.device, env: dict[str, str]) -> DaskTaskRunner:
    """The task runner for the stage's units (`uses_cluster` must hold).

    `env` reaches the local cluster's worker processes (the tracking and Prefect servers
    they report to); workers of a running scheduler are started by the user with theirs."""
    if parallel.scheduler:
        return DaskTaskRunner(address=parallel.scheduler)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs=local_cluster_kwargs(parallel, device, env))


def local_cluster_kwargs(parallel: ParallelParams, device: torch.device, env: dict[str, str]) -> dict[str, Any]:
    """`distributed.LocalCluster`'s arguments for a stage's units (a stage's own cluster, or
    the pipeline's: adapters/pipeline_cluster.py). Sets the fork server's imports first."""
    fork_server.preload_stack()  # workers fork from a server that imported their stack once
    return {
        "n_workers": local_worker_count(parallel, device),
        "threads_per_worker": parallel.threads_per_worker,
        "processes": True,
        "dashboard_address": None,
        "silence_logs": logging.ERROR,
        "preload": [WORKER_MODULE],
        "env": env,
        # a unit holds a stream and a model or two, far below this; the nanny's
        # memory-pressure restarts would only kill long units on a small machine
        "memory_limit": 0,
    }


def scheduler_is_local(address: str) -> bool:
    """True when a scheduler address is on this machine (its workers can reach loopback)."""
    host = urlparse(address).hostname or ""
    return host in {"127.0.0.1", "localhost", "::1"}


def check_remote_tracking(parallel: ParallelParams, tracking_uri: str) -> None:
    """Workers on other machines cannot write to this machine's sqlite file or loopback server."""
    if parallel.scheduler and not scheduler_is_local(parallel.scheduler) and tracking_uri.startswith("sqlite:"):
        raise ParamsError(
            f"params.yaml: parallel.scheduler: {parallel.scheduler} runs units on other machines, which cannot write "
            "to this machine's sqlite store; set MLFLOW_TRACKING_URI to a tracking server they reach "
            "(README \"Many machines\")"
        )


def unit_annotations(parallel: ParallelParams) -> dict[str, Any]:
    """Dask annotations for each unit: the resources it holds (e.g. {"GPU": 1})."""
    return {"resources": dict(parallel.unit_resources)} if parallel.unit_resources else {}


@contextlib.contextmanager
def process_cluster(workers: int, log_dir: Path, env: dict[str, str] | None = None,
                    startup_seconds: float = 120) -> Iterator[str]:
    """A `dask scheduler` and `workers` separate `dask worker` processes on loopback: what
    README "Many machines" starts on several machines, here on one (benchmarks and tests).
    Yields the scheduler's address; stops every process afterwards."""
    from distributed import Client

    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    full_env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "DASK_CONFIG": str(DASK_CONFIG)} | (env or {})
    dask = str(Path(sys.executable).parent / "dask")
    commands = [[dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                 "--preload", SCHEDULER_MODULE]]
    commands += [[dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                  "--preload", WORKER_MODULE, "--name", str(k), "--memory-limit", "0"] for k in range(workers)]
    processes: list[subprocess.Popen] = []
    try:
        for k, command in enumerate(commands):
            with (log_dir / f"dask-{k}.log").open("w") as log:
                processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                                  cwd=REPO_ROOT, start_new_session=True))
        with Client(address, timeout=startup_seconds) as client:
            client.wait_for_workers(workers, timeout=startup_seconds)
        yield address
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

