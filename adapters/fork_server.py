"""The fork server a local Dask cluster's workers start from (multiprocessing-method:
forkserver, adapters/dask_config/slowfast.yaml).

It imports the workers' whole stack (torch, Prefect, MLflow, components/: `PRELOAD`) once;
each worker is then a fork of it, ready in milliseconds, instead of importing it again.
Two things make that happen:
- Dask's first `get_mp_context()` replaces the server's preload list with its own (numpy,
  pandas, ...), so ours is set after that call (`preload_stack`).
- A stage that knows where its workers report (PREFECT_API_URL set, as ./run.sh sets it)
  starts the server on its first line (`start_early`), so the server imports the stack on
  one core while the stage imports its own on the other, instead of one after the other
  when the first unit is submitted.

Light on purpose (no torch, Prefect, Dask or MLflow here): it runs before the stage's imports.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import multiprocessing.forkserver
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from adapters import pipeline_cluster  # light: the environment variable ./run.sh sets

if TYPE_CHECKING:
    from components.config import Params

WORKER_MODULE = "adapters.dask_worker"  # also each worker's Dask preload (its dask_setup)
PRELOAD = ["distributed", WORKER_MODULE]


def preload_stack() -> None:
    """Make the fork server import `PRELOAD` (call before the cluster starts). A server this
    process already runs keeps its list; one started early already has it."""
    import dask
    from distributed.utils import get_mp_context

    context = get_mp_context()  # Dask sets its own list on its first call: ours goes after
    if dask.config.get("distributed.worker.multiprocessing-method") == "forkserver":
        context.set_forkserver_preload(PRELOAD)


def start_early(argv: list[str], runs_units: Callable[[Params], bool] = lambda params: True) -> bool:
    """Start the fork server now when the stage (`argv`: its command-line arguments) will run
    a local cluster (`runs_units`: whether its params give it units to run) and its workers'
    Prefect API is already known. False when it did not (the cluster then starts it as usual;
    a bad params file is reported by the stage). A stage with nothing to run must not start
    it: its imports would take the second core from the stage's own."""
    if not os.environ.get("PREFECT_API_URL"):
        return False  # the stage starts a temporary server first; the workers need its URL at import
    if os.environ.get(pipeline_cluster.ENV):
        return False  # ./run.sh's cluster runs the units (adapters/pipeline_cluster.py), its workers warm
    from components.errors import SlowfastError

    try:
        params = stage_params(tuple(argv))
    except SlowfastError:
        return False
    if params.parallel.scheduler or params.parallel.workers <= 0 or not runs_units(params):
        return False
    # What Dask's nannies set before they start a worker process; a worker forked from this
    # server inherits this server's environment instead.
    os.environ.update(_pre_spawn_environ())
    multiprocessing.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return True


def _pre_spawn_environ() -> dict[str, str]:
    """`distributed.nanny.pre-spawn-environ` from the Dask config (DASK_CONFIG), as Dask
    reads it: a variable already set wins, a null value sets nothing."""
    import dask.config

    config = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    return {k: os.environ.get(k, str(v)) for k, v in config.items() if v is not None}


@functools.cache
def stage_params(argv: tuple[str, ...]) -> Params:
    """The stage's params (`argv`: its arguments), loaded once for the checks made before its
    imports (`start_early`, flows/_empty.exit_if_nothing_to_run); a bad file raises each time."""
    from components.config import load_params
    from components.layout import REPO_ROOT

    paths = stage_paths(list(argv))
    return load_params(Path(paths.root or REPO_ROOT) / paths.params)


def stage_paths(argv: list[str]) -> argparse.Namespace:
    """--root and --params as the stage's command line (flows/_cli.py) takes them; the rest
    is the stage's to parse."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--root")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_known_args(argv)[0]
