# Sourced by run.sh and test.sh: Prefect and DVC settings for this checkout.
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.slowfast/prefect}"
mkdir -p "$PREFECT_HOME"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export DO_NOT_TRACK=1
# MLflow reads DO_NOT_TRACK only when it is "true"; its own switch, for the loopback server too
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"
export DVC_NO_ANALYTICS=1
export PATH="$PWD/.venv/bin:$PATH"
