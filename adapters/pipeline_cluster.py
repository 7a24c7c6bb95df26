"""One Dask cluster for the whole pipeline: ./run.sh starts it beside the Prefect and MLflow
servers (`python -m adapters.pipeline_cluster_server STATE_FILE PORT RUN_PID [PARAMS_FILE]`), and each stage that runs
units (tune, stream, text) submits them to it instead of starting a local cluster of its own.

Why: a stage's own cluster forks its workers from a server that imports their stack (torch,
distributed, Prefect, MLflow, peft, components/: 7-8 s on one core) after the stage has
started, so its first unit began 9-12 s after the stage, against 4-6 s for a bare script
(benchmarks/parallel.py). This cluster imports that stack once per pipeline run, while
fetch, prepare and pretrain run, and its workers stay warm from one stage to the next.

A stage uses it only where it would have started a local cluster of the same shape (worker
count, threads, and the environment its workers get: tracking and Prefect servers, torch
threads); otherwise it starts its own as before and says why in one line. The cluster
stops with ./run.sh, and by itself when ./run.sh is gone (killed with SIGKILL).

The state file says where the cluster stands: {"state": "starting" | "ready" | "off" |
"failed", ...}; ./run.sh writes "starting" before it starts this process, which adds its pid.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.errors import SlowfastError

ENV = "SLOWFAST_PIPELINE_CLUSTER"  # the state file's path; set by ./run.sh
LOG = "dask-cluster.log"  # beside the state file, in .slowfast/
STARTUP_SECONDS = 300.0  # a stage waits this long at most for a cluster still starting


class PipelineClusterFailed(SlowfastError):
    """The pipeline's cluster did not start; the stage cannot run its units on it."""


def shape(workers: int, threads_per_worker: int, env: dict[str, str]) -> dict[str, Any]:
    """What a stage's local cluster would be: the pipeline's is used only when equal."""
    return {"workers": workers, "threads_per_worker": threads_per_worker, "env": dict(sorted(env.items()))}


def address_for(wanted: dict[str, Any], say: Callable[..., None] = print) -> str | None:
    """The pipeline cluster's scheduler address for a stage that wants a local cluster of
    shape `wanted`, waiting while it starts; None when there is none (not under ./run.sh,
    or its params turned it off) or its shape differs (`say` tells why). Raises when it
    failed to start: the stage would otherwise hide that behind a cluster of its own."""
    path = os.environ.get(ENV)
    if not path:
        return None
    state = started_state(Path(path))
    if state["state"] == "off":
        return None
    if state["state"] != "ready":
        raise PipelineClusterFailed(f"the pipeline's Dask cluster did not start: {state.get('error', state['state'])}; "
                                    f"see {Path(path).with_name(LOG)}")
    if state["shape"] != wanted:
        differ = sorted(k for k in wanted if wanted[k] != state["shape"].get(k))
        say(f"parallel: the pipeline's Dask cluster was started for other {', '.join(differ)} than this stage's "
            "params ask for: this stage starts a cluster of its own", flush=True)
        return None
    return state["address"]


def started_state(path: Path) -> dict[str, Any]:
    """The state in `path` once it is no longer "starting" (a failure if it never gets there)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {"state": "failed", "error": f"{path} is missing or unreadable"}
        if state["state"] != "starting":
            return state
        if "pid" in state and not alive(int(state["pid"])):
            return {"state": "failed", "error": "its process ended while starting"}
        if time.monotonic() > deadline:
            return {"state": "failed", "error": f"not ready after {STARTUP_SECONDS:.0f} s"}
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Whether process `pid` still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
