"""Flow: compare every method's results and name the champion in the model registry."""

from __future__ import annotations

from prefect import flow
from rich.console import Console
from rich.table import Table

from components.comparison import COLUMNS, format_value
from tasks.compare import compare
from tasks.context import REPO_ROOT
from tasks.tracking import tracking_uri


def print_table(result: dict) -> None:
    table = Table(title=f"slow-fast methods (best {result['metric']} first)")
    table.add_column("method")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for name in result["order"]:
        table.add_row(name, *(format_value(c, result["records"][name][c]) for c in COLUMNS))
    console = Console()
    console.print(table)
    console.print(f"champion: {result['order'][0]}  (MLflow registry alias 'champion')")


@flow(name="compare-methods")
def compare_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    result = compare(params_path, root)
    print_table(result)
    return result


if __name__ == "__main__":
    from flows._cli import run

    run(compare_flow)
    print(f"Open the MLflow UI on this store: mlflow ui --backend-store-uri {tracking_uri()}")
