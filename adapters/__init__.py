"""Adapters to the services slowfast runs on: the MLflow store (`mlflow_store`), Prefect's
concurrency slots (`prefect_lock`) and DVC's command line (`dvc_cli`). No science here and
no Prefect tasks: tasks/ calls these to record and coordinate what components/ computed."""
