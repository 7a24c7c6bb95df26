"""Print the comparison table and where to look next: `python -m flows.report`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from components.comparison import HEADERS, champions, shown_columns, summaries_from_metrics, table_rows
from components.config import load_params
from components.errors import SlowfastError
from components.layout import Layout
from flows._cli import REPO_ROOT
from adapters.mlflow_store import store_uri


def print_comparison(root: Path = REPO_ROOT, console: Console | None = None) -> bool:
    """The table from results/compare.json, best first, within 120 columns; False when
    there is none yet."""
    path = Path(root) / "results" / "compare.json"
    if not path.is_file():
        return False
    records = json.loads(path.read_text())
    summaries = summaries_from_metrics(records)
    references = {name: str(m.get("reference") or "") for name, m in records.items()}
    columns, notes = shown_columns(summaries)
    timings = _timings(Path(root), list(records))
    table = Table(title="slow-fast methods, best first (results/compare.md)", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("method", no_wrap=True)
    for column in columns:
        table.add_column(HEADERS.get(column, column), justify="right", no_wrap=True)
    if timings:
        table.add_column("s/window", justify="right", no_wrap=True)
    for row in table_rows(summaries, list(records), sep="±", columns=columns, references=references):
        name = row[0].removesuffix(" (ref)")
        table.add_row(*row, *([timings.get(name, "")] if timings else []))
    # Logs and pipes get a width that fits the table; a terminal keeps its own.
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    for name, why in references.items():
        if why:
            console.print(f"(ref) {name}: {why}; compared, never champion", soft_wrap=False)
    for note in notes:
        console.print(note)
    _print_tuning(Path(root), console)
    champion = champions(list(records), references)[0]
    console.print(f"champion: {champion} (MLflow registry alias 'champion')")
    return True


def _print_tuning(root: Path, console: Console) -> None:
    """Defaults vs tuned, when the tune stage chose configurations (results/tuning_comparison.json)."""
    path = root / "results" / "tuning_comparison.json"
    tuning = json.loads(path.read_text()) if path.is_file() else {}
    if not tuning.get("rows"):
        return
    metric = tuning["metric"]
    table = Table(title=f"defaults vs tuned ({metric}; results/compare.md)", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for header in ("method", f"default {metric}", "rank", f"tuned {metric}", "rank", "moved"):
        table.add_column(header, justify="left" if header in ("method", "moved") else "right", no_wrap=True)
    for r in tuning["rows"]:
        moved = r["default_rank"] - r["tuned_rank"]
        tuned = f"{r['with_tuning']:.3f}±{r['with_tuning_std']:.3f}" if r["tuned"] else "not tuned"
        table.add_row(r["method"], f"{r['default']:.3f}±{r['default_std']:.3f}", str(r["default_rank"]), tuned,
                      str(r["tuned_rank"]), "=" if moved == 0 else (f"up {moved}" if moved > 0 else f"down {-moved}"))
    console.print(table)
    console.print(f"both columns: {metric} on the evaluation stream; the knobs were chosen on the tuning stream "
                  "(no row shared)", soft_wrap=False)


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
