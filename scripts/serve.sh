#!/usr/bin/env bash
# Serve a registered model over HTTP with MLflow's scoring server (README "Serving").
#   scripts/serve.sh                     the comparison's champion, models:/slowfast-<stream>@champion, on port 5001
#   scripts/serve.sh MODEL_URI [PORT]    e.g. models:/slowfast-<stream>-live@champion (the live loop's served model)
# POST rows of float32 features to http://127.0.0.1:PORT/invocations; each answer row holds
# one probability per class, in the order of the stream's class names (the model's metadata).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/prefect_env.sh   # .venv/bin on PATH: `mlflow models serve` starts `uvicorn` from there
stream=$(python -c '
import sys
from components.config import load_params
from components.errors import SlowfastError
try:
    print(load_params("params.yaml").stream.name)
except SlowfastError as error:
    sys.exit(f"error: {error}")')
uri="${1:-models:/slowfast-$stream@champion}"
port="${2:-5001}"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}"
# Registered models are torch.export archives: nothing to unpickle, so refuse pickle outright.
export MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false
exec mlflow models serve -m "$uri" --env-manager local --host 127.0.0.1 --port "$port"
