"""The benchmark suite in one command: run the benchmark scripts, then print every target
from their JSON results with the figure measured and whether it was met.

    python -m benchmarks                      # every script (about 10 min on 2 cores), then the table
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

RESULTS = Path(__file__).resolve().parent / "results"
SCRIPTS = ("orchestration", "adaptation_latency", "scaling", "prepare_table")
# "Flat" read as: the largest per-unit time at most 1.5x the smallest while the size grows
# 16x (windows) or 100x (buffer rows); a cost linear in the size would show 16x / 100x.
FLAT = 1.5


def _spread(values: list[float]) -> float:
    return max(values) / min(values)


def checks(name: str, r: dict) -> list[tuple[str, str, str, bool | None]]:
    """(what, measured, target, met) rows for one script's results; met None = no target."""
    if name == "orchestration":
        md, mn = r["median"], r["min"]
        return [
            ("wall, start-up included", f"{md['wall_ratio']['total']:.3f} (min {mn['wall_ratio']['total']:.3f})", "<= 1.10",
             md["wall_ratio"]["total"] <= 1.10),
            ("training loops", f"{md['train_ratio']['total']:.3f} (min {mn['train_ratio']['total']:.3f})", "<= 1.03",
             md["train_ratio"]["total"] <= 1.03),
            ("samples per second", f"{md['throughput_ratio']:.3f} (min {mn['throughput_ratio']:.3f})", ">= 0.95",
             md["throughput_ratio"] >= 0.95),
            ("same accuracies both sides", str(r["identical_accuracies"]), "True", bool(r["identical_accuracies"])),
            ("MLflow calls, s per window", f"{r['mlflow_calls_per_window']:.1f} / {r['mlflow_seconds_per_window']:.2f} s", "", None),
            ("task runs, stream flow", str(r["task_runs"].get("slow-fast-stream")), "", None),
        ]
    if name == "adaptation_latency":
        methods, out = r["methods"], []
        if "lora" in methods:
            out.append(("lora: absorb 1,000 rows", f"{methods['lora']['median_s']:.3f} s", "<= 0.5 s", methods["lora"]["median_s"] <= 0.5))
        if "error_memory" in methods:
            s = methods["error_memory"]["median_s"]
            out.append(("error_memory: absorb 1,000", f"{s * 1e3:.1f} ms", "<= 10 ms", s <= 0.010))
        if "error_memory_correction" in r:
            added = r["error_memory_correction"]["added"]
            out.append(("its correction, 256 rows", f"+{added * 100:.1f}%", "<= +20%", added <= 0.20))
        return out
    if name == "scaling":
        windows = [w["fast_ms"] for w in r["windows"]]
        steps = [b["ms_per_step"] for b in r["replay"]]
        return [
            (f"per window, {r['windows'][0]['windows']}..{r['windows'][-1]['windows']} windows",
             f"{_spread(windows):.2f}x ({windows[0]:.1f}..{windows[-1]:.1f} ms)", f"flat (<= {FLAT}x)", _spread(windows) <= FLAT),
            (f"replay step, {r['replay'][0]['buffer']:,}..{r['replay'][-1]['buffer']:,} rows",
             f"{_spread(steps):.2f}x ({steps[0]:.2f}..{steps[-1]:.2f} ms)", f"flat (<= {FLAT}x)", _spread(steps) <= FLAT),
            ("replay bytes = configured", "all sizes" if all(b["fast_state_bytes"] == b["configured_bytes"] for b in r["replay"]) else "differs",
             "equal", all(b["fast_state_bytes"] == b["configured_bytes"] for b in r["replay"])),
            ("memory entries = capacity", ", ".join(f"{m['entries']}/{m['capacity']}" for m in r["error_memory"]),
             "equal", all(m["entries"] == m["capacity"] for m in r["error_memory"])),
        ]
    if name == "prepare_table":
        return [
            (f"{r['rows']:,} x {r['features']} table", f"{r['prepare_seconds']:.1f} s", "< 20 s", r["prepare_seconds"] < 20),
            ("peak memory / input", f"{r['peak_rss_over_input']:.2f}x", "< 3x", r["peak_rss_over_input"] < 3),
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
