"""Tasks for one method over the stream, per seed: open its MLflow run, absorb each window
(one task per window, state handed over through atomic checkpoints), close with the
summary; then aggregate the seeds.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from components.checkpoint import load_state, save_json, save_state
from components.comparison import aggregate_seeds
from components.config import load_params
from components.evaluation import ContinualEvaluator, EvalPoint
from components.methods import build_method, entry_config, parse_method_config
from components.methods.base import Method, MethodContext
from components.metrics import min_accuracy, stability_gap, summarize, worst_case_accuracy
from components.models import build_model
from components.progress import (
    Progress, file_digest, fingerprint, load_progress, resumable, save_progress, stage_code_digest,
)
from components.plots import accuracy_heatmap, continual_csv, matrix_csv
from components.protocol import absorb_window, evaluate_windows
from components.runtime import peak_memory_mb
from tasks import tracking
from tasks.context import REPO_ROOT, RunContext, open_context, state_root


def _method(ctx: RunContext, entry: str, state_path: Path | None, evaluator: ContinualEvaluator | None = None) -> Method:
    p = ctx.params
    slow = build_model(p.model, ctx.stream.manifest.num_features, ctx.stream.num_classes)
    slow.load_state_dict(load_state(ctx.models_dir / "slow" / "model.pt"))
    hooks = (evaluator.on_step, evaluator.before_step) if evaluator is not None else (None, None)
    context = MethodContext(ctx.stream, ctx.device, ctx.generator, *hooks)
    method = build_method(entry, entry_config(p.methods, entry), slow, context)
    if state_path is not None:
        method.load_state_dict(load_state(state_path))
    return method


# Summarised once per run by close_method_run at step = last window; per window they stay on
# the child runs, so the parent never holds two values of one metric at one step.
RUN_TOTALS = ("fast_state_bytes", "peak_memory_mb", "samples_per_second")


def state_path(ctx: RunContext, entry: str, seed: int, window: int) -> Path:
    return ctx.state_dir / entry / f"seed{seed}" / f"window-{window:04d}.pt"


def seed_dir(ctx: RunContext, entry: str, seed: int) -> Path:
    return ctx.results_dir / "methods" / entry / f"seed{seed}"


def _fingerprint(ctx: RunContext, entry: str, seed: int) -> str:
    """Everything a method's numbers depend on: a change in any of it means start over (and
    an unchanged one means its finished results are kept)."""
    p = ctx.params
    return fingerprint(
        ctx.stream.manifest.content_hash, file_digest(ctx.models_dir / "slow" / "model.pt"),
        entry_config(p.methods, entry), seed, p.model.model_dump(), p.evaluation.model_dump(), p.threads, str(ctx.device),
        stage_code_digest("stream"),
    )


SEED_FILES = ("metrics.json", "accuracy_matrix.csv", "accuracy_matrix.png", "continual.csv")


@task(name="kept-method", cache_policy=NO_CACHE)
def kept_method(entry: str, params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict | None:
    """The method's summary if its results on disk came from exactly these inputs (every
    seed's fingerprint matches and its files are there): nothing to train or log. Else None."""
    ctx = open_context(params_path, root)
    method_dir = ctx.results_dir / "methods" / entry
    try:
        summary = json.loads((method_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    current = {str(seed): _fingerprint(ctx, entry, seed) for seed in ctx.params.seeds}
    if summary.get("fingerprints") != current:
        return None
    if not all((seed_dir(ctx, entry, seed) / name).is_file() for seed in ctx.params.seeds for name in SEED_FILES):
        return None
    print(f"[{entry}] unchanged since its results were written: kept ({len(current)} seed(s), ACC "
          f"{summary['mean']['acc']:.3f}; MLflow runs {', '.join(r[:8] for r in summary['mlflow_run_ids'])})", flush=True)
    return summary


@task(name="remove-stale-results", cache_policy=NO_CACHE)
def remove_stale_results(entries: list[str], params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> list[str]:
    """results/methods/ holds exactly the entries under `methods:` (a persisted DVC output,
    so DVC does not clear it): folders of removed entries go."""
    ctx = open_context(params_path, root)
    methods_dir = ctx.results_dir / "methods"
    stale = sorted(p.name for p in methods_dir.iterdir() if p.is_dir() and p.name not in entries) \
        if methods_dir.is_dir() else []
    for name in stale:
        shutil.rmtree(methods_dir / name)
        print(f"[stream] results/methods/{name}: no longer under methods: in {params_path}, removed", flush=True)
    return stale


@task(name="open-method-run", cache_policy=NO_CACHE)
def open_method_run(
    entry: str, seed: int, params_path: str = "params.yaml", root: str = str(REPO_ROOT), flow_id: str = ""
) -> dict:
    """Start the parent MLflow run and evaluate the untouched slow model (row 0 of R), or
    resume an interrupted run of the same work from its last finished window. A seed that
    flow `flow_id` finished before it was interrupted is kept: {"finished": its record}."""
    ctx = open_context(params_path, root, seed)
    p, manifest = ctx.params, ctx.stream.manifest
    config = parse_method_config(entry, entry_config(p.methods, entry))
    directory = state_path(ctx, entry, seed, 0).parent
    current = _fingerprint(ctx, entry, seed)
    previous = load_progress(directory)
    if previous is not None and previous.complete and previous.fingerprint == current \
            and previous.record is not None and flow_id and previous.flow_id == flow_id:
        return {"finished": _restore_finished_seed(ctx, entry, seed, previous)}
    if previous is not None and not previous.complete:
        tracking.mark_interrupted(previous.run_id)  # its process died: nothing else will end it
    tags = {
        "method": entry, "method_type": config.method or entry, "seed": str(seed), "stream": manifest.name,
        "stream_hash": manifest.content_hash, "phase": "stream",
    }
    params = {"method": config.model_dump(exclude_none=True), "seed": seed, "model": p.model.model_dump(),
              "evaluation": p.evaluation.model_dump(), "slow_model": "models/slow/model.pt"}
    if resumable(previous, current):
        assert previous is not None
        tags |= {"resumed_from": previous.run_id, "resumed_at_window": str(previous.next_window)}
        run_id = tracking.start_run(manifest.name, f"{entry}-seed{seed}", tags=tags, params=params)
        tracking.log_stream_input(run_id, manifest, ctx.stream.root, "stream")
        progress = Progress(current, run_id, previous.baseline, previous.windows, False,
                            [*previous.resumed_from, previous.run_id], flow_id=flow_id)
        save_progress(directory, progress)
        for record in progress.unlogged():  # finished but killed before its metrics were sent
            _log_window(ctx, entry, seed, run_id, record, directory, progress)
        print(f"[{entry} seed {seed}] resuming at window {progress.next_window} "
              f"(run {previous.run_id[:8]} was interrupted; marked FAILED)", flush=True)
    else:
        shutil.rmtree(directory, ignore_errors=True)  # checkpoints of other work
        run_id = tracking.start_run(manifest.name, f"{entry}-seed{seed}", tags=tags, params=params)
        tracking.log_stream_input(run_id, manifest, ctx.stream.root, "stream")
        baseline = evaluate_windows(_method(ctx, entry, None).predictor(), ctx.stream)
        tracking.log_metrics(run_id, {f"acc_w{j}": a for j, a in enumerate(baseline)} | {"acc_seen": baseline[0]}, step=0)
        progress = Progress(current, run_id, baseline, flow_id=flow_id)
        save_progress(directory, progress)
    return {"run_id": run_id, "baseline": progress.baseline, "num_windows": ctx.stream.num_windows,
            "windows": progress.windows}


@task(name="absorb-window", cache_policy=NO_CACHE)
def absorb(
    entry: str, seed: int, window: int, parent_run_id: str, start_step: int = 0,
    params_path: str = "params.yaml", root: str = str(REPO_ROOT),
) -> dict:
    """Fast step on one window plus consolidation, evaluated continually and at the end.

    The checkpoint and the window's record are on disk before its metrics are sent, so a
    kill at any point loses at most this window's training (components/progress.py)."""
    ctx = open_context(params_path, root, seed * 1000 + window)
    e = ctx.params.evaluation
    evaluator = ContinualEvaluator(ctx.stream, e.every_steps, e.subset_rows, seed, step=start_step, prequential=e.prequential)
    previous = state_path(ctx, entry, seed, window - 1) if window > 1 else None
    method = _method(ctx, entry, previous, evaluator)
    evaluator.start_window(window, method.predictor())
    result = absorb_window(method, ctx.stream, window)
    evaluator.end_window(method.predictor())
    save_state(method.state_dict(), state_path(ctx, entry, seed, window))

    summary = {
        "seconds": result.seconds,
        "samples_per_second": result.report.samples_seen / max(result.seconds, 1e-9),
        "fast_state_bytes": result.report.fast_state_bytes,
        "peak_memory_mb": peak_memory_mb(ctx.device),
        "acc_seen": result.seen_accuracy,
        **{f"acc_w{j}": a for j, a in enumerate(result.accuracies)},
    }
    if evaluator.prequential_accuracy is not None:
        summary["prequential_acc"] = evaluator.prequential_accuracy
    record = {"window": window, "accuracies": result.accuracies,
              "points": [p.as_dict() for p in evaluator.points], "end_step": evaluator.step,
              "summary": summary, "losses": result.report.losses,
              "train_rows": len(ctx.stream.window(window).y_train), "logged": False}
    directory = state_path(ctx, entry, seed, window).parent
    progress = load_progress(directory)
    if progress is None or progress.run_id != parent_run_id or progress.next_window != window:
        raise RuntimeError(f"{directory}: progress does not expect window {window} of run {parent_run_id}")
    progress.windows.append(record)
    save_progress(directory, progress)
    _log_window(ctx, entry, seed, parent_run_id, record, directory, progress)

    accs = " ".join(f"{a:.2f}" for a in result.accuracies[: window + 1])
    print(
        f"[{entry} seed {seed}] window {window}/{ctx.stream.num_windows - 1}  {result.seconds:5.2f}s  "
        f"acc(seen) {result.seen_accuracy:.3f}  per window: {accs}",
        flush=True,
    )
    return record


def _log_window(
    ctx: RunContext, entry: str, seed: int, parent_run_id: str, record: dict, directory: Path, progress: Progress
) -> None:
    """A window's child run, its summary on the parent at step = window, its continual
    points; then the record is marked logged."""
    window, summary = record["window"], record["summary"]
    child = tracking.start_run(
        ctx.stream.manifest.name, f"{entry}-seed{seed}-window{window}", parent_run_id=parent_run_id,
        tags={"method": entry, "seed": str(seed), "window": str(window), "phase": "window"},
        params={"train_rows": record["train_rows"]},
    )
    tracking.log_stream_input(child, ctx.stream.manifest, ctx.stream.root, f"window {window}")
    tracking.log_series(child, {f"loss_{phase}": values for phase, values in record["losses"].items()})
    tracking.log_metrics(child, summary)
    tracking.end_run(child)
    tracking.log_metrics(parent_run_id, {k: v for k, v in summary.items() if k not in RUN_TOTALS}, step=window)
    points = [EvalPoint.from_dict(p) for p in record["points"]]
    curve = [(p.step, curve_metrics(p)) for p in points]
    if window > 1 and curve:
        # The pre-window point shares its step with the previous window's last point (same
        # model): only the new window's accuracy is new there; one value per metric per step.
        curve[0] = (curve[0][0], {f"cl_acc_w{window}": curve[0][1][f"cl_acc_w{window}"]})
    tracking.log_points(parent_run_id, curve)
    record["logged"] = True
    save_progress(directory, progress)


def curve_metrics(point: EvalPoint) -> dict[str, float]:
    """Continual-evaluation metric names, logged with step = global optimizer step."""
    out = {f"cl_acc_w{j}": a for j, a in enumerate(point.accuracies)}
    if point.old_accuracy is not None:
        out["cl_acc_old"] = point.old_accuracy
    return out


@task(name="close-method-run", cache_policy=NO_CACHE)
def close_method_run(
    entry: str, seed: int, parent_run_id: str, baseline: list[float], windows: list[dict], register: bool,
    params_path: str = "params.yaml", root: str = str(REPO_ROOT),
) -> dict:
    """Summary metrics, accuracy matrix (CSV + heatmap), continual curve; the model logged
    and registered when `register` (one seed per method carries the registry version)."""
    ctx = open_context(params_path, root, seed)
    manifest = ctx.stream.manifest
    matrix = np.array([baseline, *[w["accuracies"] for w in windows]])
    points = [EvalPoint.from_dict(p) for w in windows for p in w["points"]]
    tolerance = ctx.params.evaluation.gap_tolerance
    gaps = {w["window"]: stability_gap(points, w["window"], tolerance) for w in windows}
    depths = [g["depth"] for g in gaps.values() if g["depth"] is not None]
    summary = summarize(matrix) | {
        "min_acc": min_accuracy(points),
        "wc_acc": worst_case_accuracy(points),
        "gap_depth": float(np.mean(depths)) if depths else 0.0,
        "seconds_per_window": float(np.mean([w["summary"]["seconds"] for w in windows])),
        "samples_per_second": float(np.mean([w["summary"]["samples_per_second"] for w in windows])),
        "fast_state_bytes": float(max(w["summary"]["fast_state_bytes"] for w in windows)),
        "peak_memory_mb": float(max(w["summary"]["peak_memory_mb"] for w in windows)),
    }
    for window, gap in gaps.items():
        summary[f"gap_depth_w{window}"] = gap["depth"] if gap["depth"] is not None else 0.0
        if gap["recovery_steps"] is not None:
            summary[f"gap_recovery_steps_w{window}"] = gap["recovery_steps"]
    out = _write_seed_files(ctx, entry, seed, matrix, points)
    tracking.log_metrics(parent_run_id, summary, step=len(windows))
    for name in ("accuracy_matrix.csv", "accuracy_matrix.png", "continual.csv"):
        tracking.log_artifact(parent_run_id, out / name)

    final = _method(ctx, entry, state_path(ctx, entry, seed, len(windows)))
    record = {"method": entry, "seed": seed, "mlflow_run_id": parent_run_id, "stream_hash": manifest.content_hash,
              "fingerprint": _fingerprint(ctx, entry, seed), "matrix": matrix.tolist(), **summary}
    if register:
        example = ctx.stream.window(0).x_test[:4].cpu().numpy()
        record["model_version"] = tracking.log_and_register_model(
            parent_run_id, final.predictor(), example, tracking.registered_model_name(manifest.name),
            {"method": entry, "seed": str(seed), "stream_hash": manifest.content_hash},
        )  # ends the parent run as FINISHED
        save_state(final.predictor().state_dict(), out.parent / "model.pt")
    else:
        tracking.end_run(parent_run_id)
    save_json(record, out / "metrics.json")
    directory = state_path(ctx, entry, seed, 0).parent
    progress = load_progress(directory)
    if progress is not None and progress.run_id == parent_run_id:
        progress.complete, progress.record = True, record
        save_progress(directory, progress)
    return record


def _write_seed_files(ctx: RunContext, entry: str, seed: int, matrix: np.ndarray, points: list[EvalPoint]) -> Path:
    """results/methods/<entry>/seed<k>/: the accuracy matrix (CSV + heatmap) and the curve."""
    out = seed_dir(ctx, entry, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy_matrix.csv").write_text(matrix_csv(matrix))
    (out / "continual.csv").write_text(continual_csv(points))
    accuracy_heatmap(matrix, f"{entry} (seed {seed}) on {ctx.stream.manifest.name}", out / "accuracy_matrix.png")
    return out


def _restore_finished_seed(ctx: RunContext, entry: str, seed: int, progress: Progress) -> dict:
    """A seed the interrupted flow had finished: its files again (DVC removed the stage's
    outputs before the rerun) from the record and checkpoints, nothing trained or logged."""
    record = dict(progress.record or {}, fingerprint=progress.fingerprint)
    points = [EvalPoint.from_dict(p) for w in progress.windows for p in w["points"]]
    out = _write_seed_files(ctx, entry, seed, np.array(record["matrix"]), points)
    if "model_version" in record:
        final = _method(ctx, entry, state_path(ctx, entry, seed, len(progress.windows)))
        save_state(final.predictor().state_dict(), out.parent / "model.pt")
    save_json(record, out / "metrics.json")
    print(f"[{entry} seed {seed}] finished by the interrupted run {progress.run_id[:8]}: kept", flush=True)
    return record


def flow_marker(entry: str, params_path: str, root: str) -> Path:
    """`<state dir>/<entry>/flow.json`: whether the last flow over this method finished.
    Seeds finished by a flow that did not are reused by the next one."""
    params = load_params(Path(root) / params_path)
    return state_root(Path(root), params.stream.name) / entry / "flow.json"


def begin_method_flow(entry: str, params_path: str, root: str) -> str:
    """The id of this flow over `entry`: the interrupted flow's when the last one never
    finished (its finished seeds are kept), else a new one."""
    marker = flow_marker(entry, params_path, root)
    previous = json.loads(marker.read_text()) if marker.is_file() else {"complete": True}
    flow_id = (not previous["complete"] and previous.get("flow_id")) or uuid.uuid4().hex
    save_json({"complete": False, "flow_id": flow_id}, marker)
    return flow_id


def end_method_flow(entry: str, flow_id: str, params_path: str, root: str) -> None:
    save_json({"complete": True, "flow_id": flow_id}, flow_marker(entry, params_path, root))


@task(name="summarize-seeds", cache_policy=NO_CACHE)
def summarize_seeds(
    entry: str, records: list[dict], params_path: str = "params.yaml", root: str = str(REPO_ROOT),
    calls_before: dict | None = None,
) -> dict:
    """Mean and std over seeds: the method's line in the comparison. MLflow call counts are
    this method's (since `calls_before`, a snapshot of `tracking.CALLS`)."""
    ctx = open_context(params_path, root)
    before = calls_before or {}
    stats = aggregate_seeds([{k: v for k, v in r.items() if k not in ("seed", "fingerprint")} for r in records])
    summary = {
        "method": entry,
        "seeds": [r["seed"] for r in records],
        "mlflow_run_ids": [r["mlflow_run_id"] for r in records],
        "model_version": records[0]["model_version"],
        "stream_hash": records[0]["stream_hash"],
        "fingerprints": {str(r["seed"]): r["fingerprint"] for r in records},
        "mlflow_calls": tracking.CALLS["count"] - before.get("count", 0),
        "mlflow_seconds": tracking.CALLS["seconds"] - before.get("seconds", 0.0),
        "mlflow_model_seconds": tracking.CALLS["model_seconds"] - before.get("model_seconds", 0.0),
        "matrix_mean": np.mean([r["matrix"] for r in records], axis=0).tolist(),
        **stats,
    }
    save_json(summary, ctx.results_dir / "methods" / entry / "metrics.json")
    return summary
