"""Where a stage's units run: the Dask task runner plus the loopback servers its workers
share (an MLflow server over the sqlite store, a Prefect API), or nothing when the units run
in the stage's own process (`parallel.workers: 0`). Shared by the tune, stream and text
stages. Under ./run.sh a local cluster is the pipeline's (adapters/pipeline_cluster.py),
started once for every stage."""

from __future__ import annotations

import os
from contextlib import ExitStack

from prefect_dask import DaskTaskRunner

from adapters import dask_cluster, pipeline_cluster, servers
from adapters import mlflow_store as tracking
from components.errors import ParamsError
from components.workspace import Workspace


def units_task_runner(stack: ExitStack, ws: Workspace, rdb_urls: tuple[str, ...] = ()) -> DaskTaskRunner | None:
    """The task runner for `ws`'s units, its servers entered on `stack`; None: in process.
    `rdb_urls` are other stores the workers write to (an Optuna study): a sqlite file there
    is refused with a remote scheduler, as the tracking store is."""
    parallel = ws.params.parallel
    if not dask_cluster.uses_cluster(parallel):
        return None
    dask_cluster.check_remote_tracking(parallel, tracking.tracking_uri())
    for url in rdb_urls:
        if url.startswith("sqlite:") and parallel.scheduler and not dask_cluster.scheduler_is_local(parallel.scheduler):
            raise ParamsError(f"params.yaml: parallel.scheduler {parallel.scheduler} is another machine, whose "
                              f"workers cannot write the sqlite study {url}; set tune.storage to a PostgreSQL URL")
    prefect_api = servers.shared_prefect_api()
    uri = stack.enter_context(servers.shared_tracking(ws.layout.root / ".slowfast", meanwhile=prefect_api))
    env = dask_cluster.worker_env(uri, os.environ.get("PREFECT_API_URL"), ws.params.threads)
    if not parallel.scheduler:  # under ./run.sh: the pipeline's cluster, warm, if it has this shape
        wanted = pipeline_cluster.shape(dask_cluster.local_worker_count(parallel, ws.device), parallel.threads_per_worker, env)
        if address := pipeline_cluster.address_for(wanted):
            return DaskTaskRunner(address=address)
    return dask_cluster.task_runner(parallel, ws.device, env)
