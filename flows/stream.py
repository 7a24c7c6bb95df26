"""Flow: run one method over every window of the stream, once per seed, then aggregate.

A run that was killed resumes at its first unfinished window; seeds it had finished are
kept (tasks/stream.py)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from components.config import load_params
from tasks.context import REPO_ROOT
from tasks.stream import (
    absorb, begin_method_flow, close_method_run, end_method_flow, open_method_run, summarize_seeds,
)
from tasks.tracking import end_run


@flow(name="slow-fast-stream")
def stream_flow(method: str, params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    seeds = load_params(Path(root) / params_path).seeds
    flow_id = begin_method_flow(method, params_path, root)
    records = []
    for seed in seeds:
        opened = open_method_run(method, seed, params_path, root, flow_id)
        if "finished" in opened:
            records.append(opened["finished"])
            continue
        try:
            windows = opened["windows"]  # finished by an interrupted run of the same work
            step = windows[-1]["end_step"] if windows else 0
            for k in range(len(windows) + 1, opened["num_windows"]):
                windows.append(absorb(method, seed, k, opened["run_id"], step, params_path, root))
                step = windows[-1]["end_step"]
            records.append(close_method_run(
                method, seed, opened["run_id"], opened["baseline"], windows, seed == seeds[0], params_path, root
            ))
        except BaseException:
            end_run(opened["run_id"], "FAILED")
            raise
    summary = summarize_seeds(method, records, params_path, root)
    end_method_flow(method, flow_id, params_path, root)
    print(f"[{method}] {len(seeds)} seed(s): ACC {summary['mean']['acc']:.3f} ± {summary['std']['acc']:.3f}, "
          f"{summary['mlflow_calls']} MLflow calls ({summary['mlflow_seconds']:.1f} s)", flush=True)
    return summary


if __name__ == "__main__":
    from flows._cli import run

    run(stream_flow, lambda parser: parser.add_argument("--method", required=True, help="entry under methods:"))
