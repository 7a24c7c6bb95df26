"""The benchmark suite in one command: run the benchmark scripts, then print every target
from their JSON results with the figure measured and whether it was met.

    python -m benchmarks                      # every script (about 8 min on 2 cores), then the table
    python -m benchmarks --only adaptation_latency scaling
    python -m benchmarks --summary            # only the table, from benchmarks/results/*.json

Each script runs in its own process with its defaults (see its docstring for options) and
writes its JSON; a script that fails is reported and the others still run (exit 1 at the
end). On a machine with a GPU every script picks CUDA, and the table shows the device.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import targets as t

RESULTS = Path(__file__).resolve().parent / "results"
SCRIPTS = ("orchestration", "adaptation_latency", "scaling", "prepare_table")


def _spread(values: list[float]) -> float:
    return max(values) / min(values)


def _seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 0.1 else f"{s:.3f} s"


def checks(name: str, r: dict) -> list[tuple[str, str, str, bool | None]]:
    """(what, measured, target, met) rows for one script's results; met None = no target."""
    if name == "orchestration":
        md, mn = r["median"], r["min"]
        return [
            ("wall, start-up included", f"{md['wall_ratio']['total']:.3f} (min {mn['wall_ratio']['total']:.3f})", f"<= {t.WALL_RATIO}",
             md["wall_ratio"]["total"] <= t.WALL_RATIO),
            ("training loops", f"{md['train_ratio']['total']:.3f} (min {mn['train_ratio']['total']:.3f})", f"<= {t.TRAIN_RATIO}",
             md["train_ratio"]["total"] <= t.TRAIN_RATIO),
            ("samples per second", f"{md['throughput_ratio']:.3f} (min {mn['throughput_ratio']:.3f})", f">= {t.THROUGHPUT_RATIO}",
             md["throughput_ratio"] >= t.THROUGHPUT_RATIO),
            ("same accuracies both sides", str(r["identical_accuracies"]), "True", bool(r["identical_accuracies"])),
            ("MLflow calls, s per window", f"{r['mlflow_calls_per_window']:.1f} / {r['mlflow_seconds_per_window']:.2f} s", "", None),
            ("task runs, stream flow", str(r["task_runs"].get("slow-fast-stream")), "", None),
        ]
    if name == "adaptation_latency":
        out = []
        for method, limit in t.ABSORB_SECONDS.items():
            if method in r["methods"]:
                s = r["methods"][method]["median_s"]
                out.append((f"{method}: absorb 1,000 rows", _seconds(s), f"<= {_seconds(limit)}", s <= limit))
        if "error_memory_correction" in r:
            c = r["error_memory_correction"]
            minima = f" (min +{c['added_min']:.1%})" if "added_min" in c else ""
            out.append(("its correction, 256 rows", f"+{c['added']:.1%}{minima}", f"<= +{t.CORRECTION_ADDED:.0%}", c["added"] <= t.CORRECTION_ADDED))
        return out
    if name == "scaling":
        windows = [w["fast_ms"] for w in r["windows"]]
        steps = [b["ms_per_step"] for b in r["replay"]]
        exact_bytes = all(b["fast_state_bytes"] == b["configured_bytes"] for b in r["replay"])
        at_capacity = all(m["entries"] == m["capacity"] for m in r["error_memory"])
        return [
            (f"per window, {r['windows'][0]['windows']}..{r['windows'][-1]['windows']} windows",
             f"{_spread(windows):.2f}x ({windows[0]:.1f}..{windows[-1]:.1f} ms)", f"flat (<= {t.FLAT}x)", _spread(windows) <= t.FLAT),
            (f"replay step, {r['replay'][0]['buffer']:,}..{r['replay'][-1]['buffer']:,} rows",
             f"{_spread(steps):.2f}x ({steps[0]:.2f}..{steps[-1]:.2f} ms)", f"flat (<= {t.FLAT}x)", _spread(steps) <= t.FLAT),
            ("replay bytes = configured", "all sizes" if exact_bytes else "differs", "equal", exact_bytes),
            ("memory entries = capacity", ", ".join(f"{m['entries']}/{m['capacity']}" for m in r["error_memory"]), "equal", at_capacity),
        ]
    if name == "prepare_table":
        return [
            (f"{r['rows']:,} x {r['features']} table", f"{r['prepare_seconds']:.1f} s", f"< {t.PREPARE_SECONDS:.0f} s",
             r["prepare_seconds"] < t.PREPARE_SECONDS),
            ("peak memory above imports / input", f"{r['peak_over_input']:.2f}x", f"< {t.PREPARE_MEMORY:.0f}x",
             r["peak_over_input"] < t.PREPARE_MEMORY),
        ]
    raise ValueError(f"no checks for benchmark {name!r}")


def summary(names: tuple[str, ...], console: Console) -> None:
    table = Table(title="benchmark targets (benchmarks/results/*.json)")
    table.add_column("what")
    table.add_column("measured", no_wrap=True)
    table.add_column("target", no_wrap=True)
    table.add_column("", no_wrap=True)
    verdict: dict[bool | None, str] = {True: "[green]met", False: "[red]missed", None: ""}
    for name in names:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            table.add_row(f"[bold]{name}[/]: no results, run python -m benchmarks.{name}", "", "", "", end_section=True)
            continue
        result = json.loads(path.read_text())
        device = f" on {result['device']}" if "device" in result else ""
        title = "flows / bare" if name == "orchestration" else name
        table.add_row(f"[bold]{title}[/]{device}", "", "", "")
        rows = checks(name, result)
        for i, (what, measured, target, met) in enumerate(rows):
            table.add_row(f"  {what}", measured, target, verdict[met], end_section=i == len(rows) - 1)
    console.print(table)


def run(names: tuple[str, ...], console: Console, runner: Callable[[list[str]], int] | None = None) -> list[str]:
    """Run each script in its own process; the names of those that failed."""
    runner = runner or (lambda args: subprocess.run(args).returncode)
    failed = []
    for name in names:
        console.rule(f"python -m benchmarks.{name}")
        if runner([sys.executable, "-m", f"benchmarks.{name}"]) != 0:
            failed.append(name)
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, help="run only these scripts (the table still shows all)")
    parser.add_argument("--summary", action="store_true", help="print the table from the saved results, run nothing")
    args = parser.parse_args()
    console = Console()
    failed = [] if args.summary else run(tuple(args.only or SCRIPTS), console)
    summary(SCRIPTS, console)
    if failed:
        console.print(f"[red]failed: {', '.join(failed)} (see its output above)")
        sys.exit(1)


if __name__ == "__main__":
    main()
