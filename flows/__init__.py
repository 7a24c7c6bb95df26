"""Prefect flows: wiring only. Each module runs as `python -m flows.<name>` from a DVC stage.

Quiet defaults are set here, before prefect is imported anywhere, so a user running the
pipeline sees progress lines and results rather than orchestration chatter. Anything set
in the environment wins.
"""

import os
from pathlib import Path

for _key, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DISABLE_MLFLOWDBFS": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # a run ended on a tracking server prints its link
    "GIT_PYTHON_REFRESH": "quiet",
    # MLflow sends usage telemetry from every client and server process unless this is set
    # (it reads DO_NOT_TRACK only as "true", and scripts/prefect_env.sh exports DO_NOT_TRACK=1).
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # Dask settings for the stage's workers (adapters/dask_config/slowfast.yaml: glibc's
    # memory trimming, OpenMP threads, quiet logs). Read when dask is first imported.
    "DASK_CONFIG": str(Path(__file__).resolve().parents[1] / "adapters" / "dask_config"),
    # A stage run without PREFECT_API_URL starts a temporary server; Prefect's 20 s limit
    # is missed on a loaded machine (flows/_cli.py turns a miss into one line).
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}.items():
    os.environ.setdefault(_key, _value)
