"""Non-MNIST streams through the real flows: a river drift stream and a user's CSV, with the
MLP slow model, and the stream version recorded on every MLflow run as a dataset input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tiny_params, write_params

METHODS = ("replay", "lora")


def _run(root, stream: dict, uri: str) -> dict:
    params = tiny_params(stream=stream, model={"kind": "mlp", "hidden": 32})
    params["pretrain"] = {**params["pretrain"], "epochs": 40, "lr": 0.01}
    params["methods"] = {k: params["methods"][k] for k in METHODS}
    write_params(root, params)
    from flows.prepare import prepare_flow
    from flows.pretrain import pretrain_flow
    from flows.stream import stream_flow

    prepared = prepare_flow(root=str(root))
    pretrained = pretrain_flow(root=str(root))
    records = {m: stream_flow(m, root=str(root)) for m in METHODS}
    return {"prepared": prepared, "pretrained": pretrained, "records": records, "uri": uri}


@pytest.fixture(scope="module")
def river_run(prefect_api_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("river")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    stream = {"name": "tiny-river", "source": "river-drift", "test_fraction": 0.25,
              "river": {"generator": "agrawal", "concepts": [0, 2, 4], "rows_per_window": 800, "drift_width": 100}}
    yield _run(root, stream, uri)
    mp.undo()


def test_river_stream_runs_every_stage(river_run):
    assert river_run["prepared"]["num_windows"] == 3
    assert river_run["pretrained"]["pretrain_accuracy"] > 0.8  # Agrawal function 0 is learnable
    for method in METHODS:
        summary = river_run["records"][method]
        assert len(summary["mlflow_run_ids"]) == 1


def test_every_run_names_the_stream_version_as_a_dataset_input(river_run):
    client = MlflowClient(tracking_uri=river_run["uri"])
    digest = river_run["prepared"]["content_hash"]
    parent = client.get_run(river_run["records"]["lora"]["mlflow_run_ids"][0])
    pretrain = client.get_run(river_run["pretrained"]["mlflow_run_id"])
    for run in [parent, pretrain]:
        full = client.get_run(run.info.run_id)
        assert full.data.tags["stream_hash"] == digest
        inputs = full.inputs.dataset_inputs
        assert [(d.dataset.name, d.dataset.digest) for d in inputs] == [("tiny-river", digest[:36])]


def test_a_users_csv_runs_through_the_flows(prefect_api_url, tmp_path, mlflow_store):
    rng = np.random.default_rng(0)
    n = 900
    kind = rng.choice(["fraud", "ok"], n, p=[0.3, 0.7])
    amount = rng.normal(size=n) + 2.0 * (kind == "fraud")
    (tmp_path / "data" / "raw").mkdir(parents=True)
    pl.DataFrame({
        "amount": amount, "hour": rng.integers(0, 24, n), "kind": kind,
        "day": [f"2024-03-0{1 + i * 3 // n} 12:00:00" for i in range(n)],
    }).write_csv(tmp_path / "data" / "raw" / "data.csv")
    stream = {"name": "my-table", "source": "table", "test_fraction": 0.25,
              "table": {"path": "data/raw/data.csv", "label": "kind", "window": {"timestamp": "day", "length": "1d"}}}
    result = _run(tmp_path, stream, mlflow_store)
    assert result["prepared"]["num_windows"] == 3
    assert result["pretrained"]["pretrain_accuracy"] > 0.7
    summary = tmp_path / "results" / "methods" / "replay" / "metrics.json"
    assert summary.is_file()
