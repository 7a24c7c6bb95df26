"""Flow: build the stream named in params.yaml as hive-partitioned parquet."""

from __future__ import annotations

from prefect import flow

from tasks.data import prepare_stream
from flows._cli import REPO_ROOT


@flow(name="prepare-stream")
def prepare_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    return prepare_stream(params_path, root)


if __name__ == "__main__":
    from flows._cli import run

    run(prepare_flow)
