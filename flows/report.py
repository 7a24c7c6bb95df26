"""Print the comparison table and where to look next: `python -m flows.report`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from components.comparison import COLUMNS, HEADERS, summaries_from_metrics, table_rows
from flows._cli import REPO_ROOT
from adapters.mlflow_store import tracking_uri


def print_comparison(root: Path = REPO_ROOT, console: Console | None = None) -> bool:
    """The table from results/compare.json, best first; False when there is none yet."""
    path = Path(root) / "results" / "compare.json"
    if not path.is_file():
        return False
    records = json.loads(path.read_text())
    table = Table(title="slow-fast methods, best first (results/compare.md)")
    table.add_column("method", no_wrap=True)
    for column in COLUMNS:
        table.add_column(HEADERS.get(column, column), justify="right", no_wrap=True)
    for row in table_rows(summaries_from_metrics(records), list(records), sep="±"):
        table.add_row(*row)
    # Logs and pipes get a width that fits the table; a terminal keeps its own.
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    console.print(table)
    console.print(f"champion: {next(iter(records))} (MLflow registry alias 'champion')")
    return True


def mlflow_ui_hint() -> str:
    return f"Open the MLflow UI on this store: .venv/bin/mlflow ui --backend-store-uri {tracking_uri()}"


if __name__ == "__main__":
    if not print_comparison():
        print("No comparison yet: run the pipeline first (./run.sh).", file=sys.stderr)
    print(mlflow_ui_hint())
