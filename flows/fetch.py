"""Flow: make the files a built-in real dataset needs present under data/external/."""

from __future__ import annotations

from prefect import flow

from flows._cli import REPO_ROOT
from tasks.fetch import fetch_external


@flow(name="fetch-data")
def fetch_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> str:
    return fetch_external(params_path, root)


if __name__ == "__main__":
    from flows._cli import run

    run(fetch_flow)
