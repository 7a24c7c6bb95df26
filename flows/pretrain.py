"""Flow: pretrain the slow model on window 0 of the stream."""

from __future__ import annotations

from prefect import flow

from flows._cli import REPO_ROOT
from tasks.pretrain import pretrain


@flow(name="pretrain")
def pretrain_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    return pretrain(params_path, root)


if __name__ == "__main__":
    from flows._cli import run

    run(pretrain_flow)
