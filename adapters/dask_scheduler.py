"""Preloaded by a `dask scheduler` that runs slowfast's units (`dask scheduler --preload
adapters.dask_scheduler`, README "Many machines"): imports what the scheduler unpickles.

Dask's scheduler deserializes each submitted task (a Prefect task of tasks/stream.py,
tasks/tune.py or tasks/text.py), which imports its modules: without this, the first
submission of a stage waited while the scheduler imported Prefect, MLflow, torch and
components/ (8-9 s here; measured by benchmarks/parallel.py as the time before the first
unit). A local cluster's scheduler lives in the stage's process, which has them already.
"""

from __future__ import annotations

import flows  # noqa: F401  (quiet Prefect and MLflow defaults, before either is imported)
import tasks.stream  # noqa: F401
import tasks.text  # noqa: F401
import tasks.tune  # noqa: F401
