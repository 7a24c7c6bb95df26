"""Print the comparison table and where to look next: `python -m flows.report`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from components.comparison import COLUMNS, HEADERS, summaries_from_metrics, table_rows
from components.config import load_params
from components.errors import SlowfastError
from components.layout import Layout
from flows._cli import REPO_ROOT
from adapters.mlflow_store import store_uri


def print_comparison(root: Path = REPO_ROOT, console: Console | None = None) -> bool:
    """The table from results/compare.json, best first; False when there is none yet."""
    path = Path(root) / "results" / "compare.json"
    if not path.is_file():
        return False
    records = json.loads(path.read_text())
    timings = _timings(Path(root), list(records))
    table = Table(title="slow-fast methods, best first (results/compare.md)")
    table.add_column("method", no_wrap=True)
    for column in COLUMNS:
        table.add_column(HEADERS.get(column, column), justify="right", no_wrap=True)
    if timings:
        table.add_column("s/window", justify="right", no_wrap=True)
    for row in table_rows(summaries_from_metrics(records), list(records), sep="±"):
        table.add_row(*row, *([timings.get(row[0], "")] if timings else []))
    # Logs and pipes get a width that fits the table; a terminal keeps its own.
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    console.print(table)
    console.print(f"champion: {next(iter(records))} (MLflow registry alias 'champion')")
    return True


def _timings(root: Path, methods: list[str]) -> dict[str, str]:
    """Seconds per window of this checkout's last run of each method (mean ± std over
    seeds), from the run records: machine-dependent, so never in the DVC-hashed results."""
    try:
        layout = Layout(root, load_params(root / "params.yaml").stream.name)
    except SlowfastError:
        return {}
    out = {}
    for method in methods:
        try:
            t = json.loads(layout.method_record(method).read_text())["timings"]
            out[method] = f"{t['mean']['seconds_per_window']:.2f}±{t['std']['seconds_per_window']:.2f}"
        except (OSError, ValueError, KeyError):
            continue
    return out


def mlflow_ui_hint() -> str:
    return f"Open the MLflow UI on this store: .venv/bin/mlflow ui --backend-store-uri {store_uri()}"


if __name__ == "__main__":
    if not print_comparison():
        print("No comparison yet: run the pipeline first (./run.sh).", file=sys.stderr)
    print(mlflow_ui_hint())
