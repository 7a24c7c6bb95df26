"""Flow: make the files a built-in real dataset needs present under data/external/. As a
stage whose source reads nothing from there (the default mnist1d), it writes data/external/
SOURCE.json without importing Prefect (2-3 s of a pipeline on 2 cores)."""

from __future__ import annotations

import sys
from pathlib import Path

from components.config import Params
from components.data.fetch import FETCHED_SOURCES, fetch_for_stream


def nothing_to_fetch(root: Path, params: Params) -> None:
    """The stage's output for a source that needs no files: data/external/SOURCE.json."""
    print(f"[fetch] {fetch_for_stream(params.stream.source, root / 'data' / 'external')}", flush=True)


if __name__ == "__main__":
    from flows._empty import exit_if_nothing_to_run

    exit_if_nothing_to_run(sys.argv[1:], lambda params: params.stream.source not in FETCHED_SOURCES, nothing_to_fetch)

from prefect import flow  # noqa: E402

from flows._cli import REPO_ROOT
from tasks.fetch import fetch_external


@flow(name="fetch-data")
def fetch_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> str:
    return fetch_external(params_path, root)


if __name__ == "__main__":
    from flows._cli import run

    run(fetch_flow)
