"""Flows: run methods over every window of the stream, once per seed, then aggregate.

`methods_flow` (the `stream` stage) runs every entry under `methods:`. A method whose inputs
(params, stream, slow model, code) are unchanged since its results were written is kept as
it is, MLflow runs untouched. The others are cut into units, one per entry x seed, that run
as Prefect tasks on a Dask cluster (params.yaml `parallel:`; tasks/stream.py run_unit):
worker processes live for the whole stage, so the fixed cost is paid once per stage, not per
unit. `stream_flow` runs one entry (the `slow-fast-loop` deployment). A unit that was killed
resumes at its first unfinished window; units it had finished are kept.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the stage: its workers' fork server imports their stack meanwhile
    from adapters.fork_server import start_early

    start_early(sys.argv[1:])


import argparse
from contextlib import ExitStack

import dask
from prefect import flow
from prefect.futures import wait

from adapters import dask_cluster, engine
from adapters import mlflow_store as tracking
from components.errors import SlowfastError
from components.methods import entry_config
from components.workspace import Unit, open_workspace
from flows._cli import REPO_ROOT
from tasks.stream import begin_method_flow, end_method_flow, kept_method, remove_stale_results, run_unit, summarize_seeds


def run_methods(entries: list[str], params_path: str, root: str, in_process: bool) -> dict[str, dict]:
    """Every seed of each entry: kept if unchanged, else one unit per seed, all submitted at
    once (longest first, by the last run's timings) and gathered. A failed unit fails the
    flow after the others finished; their results are written and kept for the rerun."""
    ws = open_workspace(params_path, root)
    seeds, parallel = ws.params.seeds, ws.params.parallel
    summaries = {e: kept for e in entries if (kept := kept_method(e, params_path, root)) is not None}
    todo = [e for e in entries if e not in summaries]
    flow_ids = {e: begin_method_flow(e, params_path, root) for e in todo}
    units = sorted((Unit(e, s, params_path, root) for e in todo for s in seeds),
                   key=lambda u: -_expected_seconds(ws.layout, u.entry))
    uri = tracking.tracking_uri()
    records: dict[Unit, dict] = {}
    errors: list[BaseException] = []
    if in_process:
        for unit in units:
            records[unit] = run_unit(unit, flow_ids[unit.entry], unit.seed == seeds[0], uri)
    else:
        with dask.annotate(**dask_cluster.unit_annotations(parallel)):
            futures = {u: run_unit.submit(u, flow_ids[u.entry], u.seed == seeds[0], uri) for u in units}
        wait(list(futures.values()))
        for unit, future in futures.items():
            outcome = future.result(raise_on_failure=False)
            if isinstance(outcome, BaseException):
                errors.append(outcome)
            else:
                records[unit] = outcome
    for entry in todo:
        done = [records[u] for u in units if u.entry == entry and u in records]
        if len(done) < len(seeds):
            continue  # a seed failed: its finished seeds stay on disk for the rerun
        summary = summarize_seeds(entry, sorted(done, key=lambda r: seeds.index(r["seed"])), params_path, root)
        end_method_flow(entry, flow_ids[entry], params_path, root)
        summaries[entry] = summary
        print(f"[{entry}] {len(seeds)} seed(s): ACC {summary['mean']['acc']:.3f} ± {summary['std']['acc']:.3f}, "
              f"{summary['mlflow_calls']} MLflow calls ({summary['mlflow_seconds']:.1f} s)", flush=True)
    if errors:
        user_errors = [e for e in errors if isinstance(e, SlowfastError)]
        first = (user_errors or errors)[0]
        for other in errors:  # an unexpected failure of another unit is reported too, never hidden behind the first
            if other is not first and not isinstance(other, SlowfastError):
                print(f"error: {str(other).splitlines()[0] if str(other) else type(other).__name__}", file=sys.stderr)
        raise first
    return {e: summaries[e] for e in entries}


def _expected_seconds(layout, entry: str) -> float:  # noqa: ANN001
    """The last run's seconds per window of `entry` (0 if none): long units go first, so
    the stage does not end waiting for one long unit started last."""
    import json

    try:
        return float(json.loads(layout.method_record(entry).read_text())["timings"]["mean"]["seconds_per_window"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


@flow(name="slow-fast-stream")
def stream_flow(method: str, params_path: str = "params.yaml", root: str = str(REPO_ROOT), in_process: bool = True) -> dict:
    """One entry under `methods:` over the stream, every seed."""
    entry_config(open_workspace(params_path, root).params.methods, method)  # one line if there is no such entry
    return run_methods([method], params_path, root, in_process)[method]


@flow(name="slow-fast-methods")
def methods_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT), in_process: bool = True) -> dict[str, dict]:
    """Every entry under `methods:`; results of entries no longer there are removed."""
    entries = list(open_workspace(params_path, root).params.methods)
    remove_stale_results(entries, params_path, root)
    return run_methods(entries, params_path, root, in_process)


def main(method: str | None = None, params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    """The stage: units on the Dask cluster `parallel:` names, sharing one tracking store
    and one Prefect API (loopback servers started here when none is set)."""
    ws = open_workspace(params_path, root)
    with ExitStack() as stack:
        runner = engine.units_task_runner(stack, ws)
        chosen = stream_flow if method else methods_flow
        options = {"task_runner": runner} if runner is not None else {}
        arguments = {"method": method} if method else {}
        return chosen.with_options(**options)(params_path=params_path, root=root, in_process=runner is None, **arguments)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default=None, help="one entry under methods: (default: every entry)")


if __name__ == "__main__":
    from flows._cli import run

    run(main, _arguments, prog="python -m flows.stream", description=__doc__)
