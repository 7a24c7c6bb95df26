"""Prefect flows: wiring only. Each module runs as `python -m flows.<name>` from a DVC stage.

Quiet defaults are set here, before prefect is imported anywhere, so a user running the
pipeline sees progress lines and results rather than orchestration chatter. Anything set
in the environment wins.
"""

import os

for _key, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DISABLE_MLFLOWDBFS": "true",
    "GIT_PYTHON_REFRESH": "quiet",
}.items():
    os.environ.setdefault(_key, _value)
