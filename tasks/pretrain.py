"""Task: pretrain the slow model on window 0 and record it in MLflow and on disk."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from components.checkpoint import save_json, save_state
from components.evaluation import evaluate_windows
from components.pretraining import pretrain_slow_model
from adapters import mlflow_store as tracking
from components.layout import REPO_ROOT
from components.workspace import open_workspace


@task(name="pretrain-slow-model", cache_policy=NO_CACHE)
def pretrain(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    ctx = open_workspace(params_path, root, tuned=False)  # it runs before the tune stage
    p, manifest = ctx.params, ctx.stream.manifest
    tracking.configure_retries(p.tracking)
    run_id = tracking.start_run(
        p.stream.name, "pretrain",
        tags={"phase": "pretrain", "stream": manifest.name, "stream_hash": manifest.content_hash, "seed": str(p.seed)},
        params={"seed": p.seed, "model": p.model.model_dump(), "pretrain": p.pretrain.model_dump()},
    )
    tracking.log_stream_input(run_id, manifest, ctx.stream.root, "pretrain")
    start = time.perf_counter()
    model, losses = pretrain_slow_model(p, ctx.stream, ctx.layout.root)
    seconds = time.perf_counter() - start
    accuracies = evaluate_windows(model, ctx.stream)
    tracking.log_series(run_id, {"train_loss": losses})
    out = ctx.layout.slow_dir
    save_state(model.state_dict(), out / "model.pt")
    # models/slow (a DVC output) holds what the inputs determine; the run's facts go beside it.
    info = {"stream": manifest.name, "stream_hash": manifest.content_hash, "pretrain_accuracy": accuracies[0]}
    save_json(info, out / "info.json")
    version = tracking.log_and_register_model(
        run_id, model, ctx.stream.window(0).x_test[:4].cpu().numpy(),
        tracking.registered_model_name(manifest.name), {"method": "pretrain", "stream_hash": manifest.content_hash},
        manifest.class_names,
        metrics={"pretrain_seconds": seconds, **{f"acc_w{j}": a for j, a in enumerate(accuracies)}},
    )  # the figures on the run and the model's page; ends the run
    facts = {"mlflow_run_id": run_id, "model_version": version, "seconds": seconds}
    save_json(facts, ctx.layout.pretrain_record)
    info |= facts
    print(f"[pretrain] {seconds:.1f}s  accuracy on window 0 (classes {ctx.stream.window(0).classes}): {accuracies[0]:.3f}", flush=True)
    return info
