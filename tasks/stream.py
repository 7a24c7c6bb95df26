"""Tasks for one method over the stream: open its MLflow run, absorb each window (one task
per window, state handed over through atomic checkpoints), then close with the summary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from components.checkpoint import load_state, save_json, save_state
from components.methods import build_method, entry_config, parse_method_config
from components.methods.base import Method, MethodContext
from components.metrics import summarize
from components.models import build_model
from components.plots import accuracy_heatmap, matrix_csv
from components.protocol import absorb_window, evaluate_windows
from tasks import tracking
from tasks.context import REPO_ROOT, RunContext, open_context


def _method(ctx: RunContext, entry: str, state_path: Path | None) -> Method:
    p = ctx.params
    slow = build_model(p.model, ctx.stream.manifest.num_features, ctx.stream.num_classes)
    slow.load_state_dict(load_state(ctx.models_dir / "slow" / "model.pt"))
    method = build_method(entry, entry_config(p.methods, entry), slow, MethodContext(ctx.stream, ctx.device, ctx.generator))
    if state_path is not None:
        method.load_state_dict(load_state(state_path))
    return method


def state_path(ctx: RunContext, entry: str, window: int) -> Path:
    return ctx.state_dir / entry / f"window-{window:04d}.pt"


@task(name="open-method-run", cache_policy=NO_CACHE)
def open_method_run(entry: str, params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    """Start the parent MLflow run and evaluate the untouched slow model (row 0 of R)."""
    ctx = open_context(params_path, root)
    p, manifest = ctx.params, ctx.stream.manifest
    config = parse_method_config(entry, entry_config(p.methods, entry))
    kind = config.method or entry
    slow_info_path = ctx.models_dir / "slow" / "info.json"
    run_id = tracking.start_run(
        manifest.name, f"{entry}-seed{p.seed}",
        tags={
            "method": entry, "method_type": kind, "seed": str(p.seed), "stream": manifest.name,
            "stream_hash": manifest.content_hash, "phase": "stream",
        },
        params={"method": config.model_dump(exclude_none=True), "seed": p.seed, "model": p.model.model_dump(),
                "slow_model": str(slow_info_path.relative_to(ctx.root))},
    )
    baseline = evaluate_windows(_method(ctx, entry, None).predictor(), ctx.stream)
    tracking.log_metrics(run_id, {f"acc_w{j}": a for j, a in enumerate(baseline)} | {"acc_seen": baseline[0]}, step=0)
    return {"run_id": run_id, "baseline": baseline, "num_windows": ctx.stream.num_windows}


@task(name="absorb-window", cache_policy=NO_CACHE)
def absorb(entry: str, window: int, parent_run_id: str, params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    """Fast step on one window plus consolidation, evaluated on every window's test rows."""
    ctx = open_context(params_path, root, seed_offset=window)
    previous = state_path(ctx, entry, window - 1) if window > 1 else None
    method = _method(ctx, entry, previous)
    result = absorb_window(method, ctx.stream, window)
    save_state(method.state_dict(), state_path(ctx, entry, window))

    n_train = len(ctx.stream.window(window).y_train)
    summary = {
        "seconds": result.seconds,
        "samples_per_second": result.report.samples_seen / max(result.seconds, 1e-9),
        "fast_state_bytes": result.report.fast_state_bytes,
        "acc_seen": result.seen_accuracy,
        **{f"acc_w{j}": a for j, a in enumerate(result.accuracies)},
    }
    child = tracking.start_run(
        ctx.stream.manifest.name, f"{entry}-window{window}", parent_run_id=parent_run_id,
        tags={"method": entry, "window": str(window), "phase": "window"}, params={"train_rows": n_train},
    )
    tracking.log_series(child, {f"loss_{phase}": values for phase, values in result.report.losses.items()})
    tracking.log_metrics(child, summary)
    tracking.end_run(child)
    tracking.log_metrics(parent_run_id, summary, step=window)

    accs = " ".join(f"{a:.2f}" for a in result.accuracies[: window + 1])
    print(
        f"[{entry}] window {window}/{ctx.stream.num_windows - 1}  {result.seconds:5.2f}s  "
        f"acc(seen) {result.seen_accuracy:.3f}  per window: {accs}",
        flush=True,
    )
    return {"window": window, "accuracies": result.accuracies, "seconds": result.seconds,
            "fast_state_bytes": result.report.fast_state_bytes}


@task(name="close-method-run", cache_policy=NO_CACHE)
def close_method_run(
    entry: str, parent_run_id: str, baseline: list[float], windows: list[dict],
    params_path: str = "params.yaml", root: str = str(REPO_ROOT),
) -> dict:
    """Summary metrics, accuracy matrix (CSV + heatmap), final model logged and registered."""
    ctx = open_context(params_path, root)
    manifest = ctx.stream.manifest
    matrix = np.array([baseline, *[w["accuracies"] for w in windows]])
    summary = summarize(matrix) | {
        "seconds_per_window": float(np.mean([w["seconds"] for w in windows])),
        "fast_state_bytes": float(max(w["fast_state_bytes"] for w in windows)),
    }
    out = ctx.results_dir / "methods" / entry
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy_matrix.csv").write_text(matrix_csv(matrix))
    accuracy_heatmap(matrix, f"{entry} on {manifest.name}", out / "accuracy_matrix.png")
    tracking.log_metrics(parent_run_id, summary, step=len(windows))
    tracking.log_artifact(parent_run_id, out / "accuracy_matrix.csv")
    tracking.log_artifact(parent_run_id, out / "accuracy_matrix.png")

    final = _method(ctx, entry, state_path(ctx, entry, len(windows)))
    example = ctx.stream.window(0).x_test[:4].cpu().numpy()
    version = tracking.log_and_register_model(
        parent_run_id, final.predictor(), example, tracking.registered_model_name(manifest.name),
        {"method": entry, "stream_hash": manifest.content_hash},
    )  # ends the parent run as FINISHED
    save_state(final.predictor().state_dict(), out / "model.pt")
    record = {"method": entry, "mlflow_run_id": parent_run_id, "model_version": version,
              "stream_hash": manifest.content_hash, **summary}
    save_json(record, out / "metrics.json")
    return record
