"""A repository's own MLflow store moves with it: a copy whose original is deleted still
loads its registered models and writes new artifacts into its own mlartifacts/."""

from __future__ import annotations

import shutil

import numpy as np
import torch

from adapters import mlflow_store as tracking


def test_a_copied_store_whose_original_is_gone_loads_models_and_writes_beside_itself(tmp_path, monkeypatch):
    import mlflow.pytorch

    original = tmp_path / "original"
    original.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{original / 'mlflow.db'}")
    run_id = tracking.start_run("s", "first")
    (tmp_path / "note.txt").write_text("hello\n")
    tracking.log_artifact(run_id, tmp_path / "note.txt")
    model = torch.nn.Linear(3, 2)
    version = tracking.log_and_register_model(run_id, model, np.zeros((2, 3), dtype=np.float32), "slowfast-s", {}, ["a", "b"])

    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    uri = f"sqlite:///{copy / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(tracking, "_RELOCATED", set())
    tracking.client()  # what every stage does first: the moved store's artifact URIs are rewritten
    loaded = mlflow.pytorch.load_model(f"models:/slowfast-s/{version}")  # before: the deleted folder
    torch.testing.assert_close(loaded(torch.ones(1, 3)), torch.softmax(model(torch.ones(1, 3)), dim=1))
    second = tracking.start_run("s", "second")
    tracking.log_artifact(second, tmp_path / "note.txt")
    tracking.end_run(second)
    assert not original.exists()
    assert len(list((copy / "mlartifacts").rglob("note.txt"))) == 2
    assert tracking.client().get_experiment_by_name("s").artifact_location == (copy / "mlartifacts").resolve().as_uri()
