"""Entry point shared by the flows' `__main__` blocks.

A user error (bad params, a stream that breaks the data contract) ends with one line on
stderr and exit code 2; a bug ends with its traceback and exit code 1; Ctrl-C with one line
and exit code 130. Either way Prefect records the flow run as failed (crashed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.config import load_params
from components.errors import SlowfastError

from components.layout import REPO_ROOT  # noqa: E402  (the flows' default project root)


def quiet_libraries() -> None:
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "prefect.flow_runs", "prefect.task_runs", "peft", "git"):
        logging.getLogger(name).setLevel(logging.CRITICAL if name.startswith("prefect") else logging.WARNING)
    # Dask's scheduler and nannies log every worker's start and stop; failures stay visible.
    for name in ("distributed", "prefect.task_runner.dask"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # The client's own errors are its scheduler connection's (a traceback per failed reconnect):
    # a stage that loses its cluster says so in one line (`_cluster_lost`), and a unit's error
    # comes back through its future.
    logging.getLogger("distributed.client").setLevel(logging.CRITICAL)
    # Prefect's event queue, drained at exit, says "Still processing items: N remaining" when a
    # run ends right after its last events (a stage that fails at once); the items are still
    # sent. Its failures are logged by another logger and stay visible.
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)


def heartbeats_unless_asked() -> contextlib.AbstractContextManager:
    """Prefect (3.9) ends every flow run by joining its heartbeat thread, which sleeps in 1 s
    steps: up to 1 s added to each stage process (measured here: a one-task flow 1.1 s ->
    0.15 s; `flows.pretrain` 0.4 s less on average). Heartbeats feed zombie-run automations
    for deployment runs (the worker's runs keep them); a stage run from the command line or
    DVC reports its own end. Setting PREFECT_FLOWS_HEARTBEAT_FREQUENCY keeps them here too."""
    if any(os.environ.get(name) for name in ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")):
        return contextlib.nullcontext()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def run(
    flow_fn: Callable[..., Any], configure: Callable[[argparse.ArgumentParser], None] | None = None,
    prog: str | None = None, description: str | None = None,
) -> None:
    parser = argparse.ArgumentParser(prog=prog or f"python -m {flow_fn.__module__}", description=description or flow_fn.__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file, relative to --root (default: params.yaml)")
    parser.add_argument("--root", default=None, help="project root holding data/, models/, results/ (default: this checkout)")
    if configure:
        configure(parser)
    args = vars(parser.parse_args())
    quiet_libraries()
    try:
        root = args.pop("root")
        # The whole params file is checked before any flow starts: a bad name, entry or value
        # ends here in one line, with no Prefect server contacted and nothing touched.
        load_params(Path(root or REPO_ROOT) / args["params"])
        with heartbeats_unless_asked():
            flow_fn(params_path=args.pop("params"), **args, **({"root": str(Path(root).resolve())} if root else {}))
    except SlowfastError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as error:
        if not str(error).startswith("Timed out while attempting to connect to ephemeral Prefect API server"):
            traceback.print_exc()
            sys.exit(1)
        seconds = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
        print(f"error: Prefect's temporary server did not answer within {seconds} s (a busy machine?); start one "
              "with `prefect server start` and set PREFECT_API_URL (./run.sh does), or raise "
              "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        # Ctrl-C, or ./run.sh stopping its pipeline: every finished window, trial and file was
        # written atomically (components/checkpoint.py), so the same command continues.
        print("interrupted: what was finished is kept; run the same command again to continue", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        if lost := _cluster_lost(error):
            print(f"error: {lost}", file=sys.stderr)
            sys.exit(2)
        traceback.print_exc()
        sys.exit(1)


def _cluster_lost(error: BaseException) -> str | None:
    """The one line for units Dask cancelled because the stage lost its scheduler (killed, out
    of memory, its machine gone); None for any other error."""
    if "distributed" not in sys.modules:
        return None
    from distributed.client import FutureCancelledError, FuturesCancelledError

    if not isinstance(error, FutureCancelledError | FuturesCancelledError):
        return None
    return (f"the units' Dask cluster went away ({error.reason}); what was finished is kept: run the same command "
            "again to continue (./run.sh's cluster logs to .slowfast/dask-cluster.log)")
