"""Flows: run methods over every window of the stream, once per seed, then aggregate.

`methods_flow` (the `stream` stage) runs every entry under `methods:` in one process, so
the fixed cost of importing and connecting is paid once; a method whose inputs (params,
stream, slow model, code) are unchanged since its results were written is kept as it is,
MLflow runs untouched. `stream_flow` runs one entry (the `slow-fast-loop` deployment).
A run that was killed resumes at its first unfinished window; seeds it had finished are
kept (tasks/stream.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow

from adapters import mlflow_store as tracking
from components.methods import entry_config
from components.workspace import Unit, open_workspace
from flows._cli import REPO_ROOT
from tasks.stream import (
    absorb, begin_method_flow, close_method_run, end_method_flow, kept_method, open_method_run, remove_stale_results,
    summarize_seeds,
)


def run_method(entry: str, params_path: str, root: str) -> dict:
    """Every seed of one entry: kept if unchanged, else trained window by window."""
    kept = kept_method(entry, params_path, root)
    if kept is not None:
        return kept
    seeds = open_workspace(params_path, root).params.seeds
    calls_before = dict(tracking.CALLS)
    flow_id = begin_method_flow(entry, params_path, root)
    records = []
    for seed in seeds:
        unit = Unit(entry, seed, params_path, root)
        opened = open_method_run(unit, flow_id)
        if opened.finished is not None:
            records.append(opened.finished)
            continue
        try:
            windows = opened.windows  # finished by an interrupted run of the same work
            for k in range(len(windows) + 1, opened.num_windows):
                windows.append(absorb(unit, k, opened.run_id, windows[-1].end_step if windows else 0))
            records.append(close_method_run(unit, opened, windows, seed == seeds[0]))
        except BaseException:
            tracking.end_run(opened.run_id, "FAILED")
            raise
    summary = summarize_seeds(entry, records, params_path, root, calls_before)
    end_method_flow(entry, flow_id, params_path, root)
    print(f"[{entry}] {len(seeds)} seed(s): ACC {summary['mean']['acc']:.3f} ± {summary['std']['acc']:.3f}, "
          f"{summary['mlflow_calls']} MLflow calls ({summary['mlflow_seconds']:.1f} s)", flush=True)
    return summary


@flow(name="slow-fast-stream")
def stream_flow(method: str, params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    """One entry under `methods:` over the stream, every seed."""
    entry_config(open_workspace(params_path, root).params.methods, method)  # one line if there is no such entry
    return run_method(method, params_path, root)


@flow(name="slow-fast-methods")
def methods_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict[str, dict]:
    """Every entry under `methods:`; results of entries no longer there are removed."""
    entries = list(open_workspace(params_path, root).params.methods)
    remove_stale_results(entries, params_path, root)
    return {entry: run_method(entry, params_path, root) for entry in entries}


def main(method: str | None = None, params_path: str = "params.yaml", **kwargs: str) -> dict:
    return stream_flow(method, params_path, **kwargs) if method else methods_flow(params_path, **kwargs)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default=None, help="one entry under methods: (default: every entry)")


if __name__ == "__main__":
    from flows._cli import run

    run(main, _arguments, prog="python -m flows.stream", description=__doc__)
