"""Flow: run one method over every window of the stream, then summarize it."""

from __future__ import annotations

from prefect import flow

from tasks.context import REPO_ROOT
from tasks.stream import absorb, close_method_run, open_method_run
from tasks.tracking import end_run


@flow(name="slow-fast-stream")
def stream_flow(method: str, params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    opened = open_method_run(method, params_path, root)
    try:
        windows = [absorb(method, k, opened["run_id"], params_path, root) for k in range(1, opened["num_windows"])]
        return close_method_run(method, opened["run_id"], opened["baseline"], windows, params_path, root)
    except BaseException:
        end_run(opened["run_id"], "FAILED")
        raise


if __name__ == "__main__":
    from flows._cli import run

    run(stream_flow, lambda parser: parser.add_argument("--method", required=True, help="entry under methods:"))
