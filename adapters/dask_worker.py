"""Preloaded by every Dask worker of the stream stage (`dask worker --preload adapters.dask_worker`
on other machines): imports the stack once per worker process and pins the worker's GPU.

Units pay milliseconds, not the seconds of importing torch, Prefect, MLflow and components/.
"""

from __future__ import annotations

import logging
import os
import sys
import zlib

import flows  # noqa: F401  (quiet Prefect and MLflow defaults, before either is imported)
import matplotlib.pyplot  # noqa: F401  (each unit draws its seed's heatmap; components/plots.py imports it on first use)
import peft  # noqa: F401  (2.7 s to import: lora, ilora and text units use it)
import torch

import components.methods  # noqa: F401  (the method registry)
import tasks.stream  # noqa: F401
from flows._cli import quiet_libraries

# What a process's first model registration (tasks/stream.py close_method_run) loads: torch's
# exporter (imported on first use) and MLflow's map of installed packages, built by scanning
# every installed distribution to check the model's pinned requirements. Done here, once per
# fork server, instead of once per worker (1-2 s of the first registered unit on each).
import mlflow.pytorch  # noqa: F401, E402
import torch.export._trace  # noqa: F401, E402
import torch.export.pt2_archive._package  # noqa: F401, E402
from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches  # noqa: E402

from adapters import mlflow_store as tracking  # noqa: E402

warn_dependency_requirement_mismatches([tracking.TORCH_REQUIREMENT])

# The process that imported this stack: the fork server the local cluster's workers fork
# from (adapters/fork_server.py), not each worker (tests/test_parallel.py checks it).
IMPORTED_BY = os.getpid()


def dask_setup(worker) -> None:  # noqa: ANN001  (distributed.Worker; called by Dask on start)
    """One GPU per worker: the worker named k makes GPU k (mod the count) current, unless
    CUDA_VISIBLE_DEVICES already narrowed it to one."""
    quiet_libraries()
    # A unit's progress lines reach the stage that submitted it (distributed's print, in
    # tasks/stream.py); printed here as well, a local cluster's terminal would show each twice.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the worker's lifetime)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if torch.cuda.is_available() and torch.cuda.device_count() > 1 and "CUDA_VISIBLE_DEVICES" not in os.environ:
        try:
            index = int(worker.name)
        except (TypeError, ValueError):
            index = zlib.crc32(str(worker.name).encode())
        torch.cuda.set_device(index % torch.cuda.device_count())
