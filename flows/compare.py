"""Flow: compare every method's results and name the champion in the model registry."""

from __future__ import annotations

import os

from prefect import flow

from flows.report import mlflow_ui_hint, print_comparison
from tasks.compare import compare
from flows._cli import REPO_ROOT


@flow(name="compare-methods")
def compare_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    return compare(params_path, root)


if __name__ == "__main__":
    from flows._cli import run

    run(compare_flow)
    if not os.environ.get("SLOWFAST_MAIN_JOB"):  # run.sh prints the report once, at the very end
        print_comparison()
        print(mlflow_ui_hint())
