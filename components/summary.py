"""One seed's and one method's numbers, from the records of their windows.

The per-window facts are measured during training (components/protocol.py,
components/evaluation.py); everything here is computed from what was recorded, so a
resumed run and an uninterrupted one summarise identically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from components.comparison import aggregate_seeds
from components.evaluation import EvalPoint
from components.metrics import min_accuracy, stability_gap, summarize, worst_case_accuracy
from components.progress import WindowRecord

# Summarised once per seed at step = last window; per window they are logged as
# `window/<name>`, so the seed's run never holds two values of one metric at one step.
RUN_TOTALS = ("fast_state_bytes", "peak_memory_mb", "samples_per_second")
# Facts about one run that its inputs do not determine: kept out of the DVC-hashed results
# (components/layout.py run_records) and in MLflow.
TIMINGS = ("seconds_per_window", "samples_per_second", "peak_memory_mb")
# What one unit cost (tasks/stream.py run_unit): in the run records, for benchmarks and the report.
UNIT_COSTS = ("unit_seconds", "work_seconds", "mlflow_calls", "mlflow_seconds", "mlflow_model_seconds", "mlflow_retries")
UNIT_CLOCK = ("unit_started", "unit_ended")  # epoch seconds: when the unit ran (benchmarks/parallel.py)
RUN_FACTS = ("mlflow_run_id", "model_version", *TIMINGS, *UNIT_COSTS, *UNIT_CLOCK)


def split_facts(record: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the inputs determine, what this run happened to do) of a seed's record."""
    facts = {k: v for k, v in record.items() if k in RUN_FACTS}
    return {k: v for k, v in record.items() if k not in RUN_FACTS}, facts


@dataclass
class SeedResult:
    matrix: np.ndarray  # R[i, j]: accuracy on window j after window i (row 0: the slow model)
    points: list[EvalPoint]  # every continual-evaluation point, in order
    metrics: dict[str, float]  # ACC, BWT, ..., min-ACC, WC-ACC, stability gap, timings


def window_metrics(
    seconds: float, samples_seen: int, fast_state_bytes: int, peak_memory_mb: float, accuracies: list[float],
    seen_accuracy: float, prequential_accuracy: float | None,
) -> dict[str, float]:
    """The scalars of one window, as logged on its child run and at step = window."""
    out = {
        "seconds": seconds,
        "samples_per_second": samples_seen / max(seconds, 1e-9),
        "fast_state_bytes": fast_state_bytes,
        "peak_memory_mb": peak_memory_mb,
        "acc_seen": seen_accuracy,
        **{f"acc_w{j}": a for j, a in enumerate(accuracies)},
    }
    if prequential_accuracy is not None:
        out["prequential_acc"] = prequential_accuracy
    return out


def curve_metrics(point: EvalPoint) -> dict[str, float]:
    """Continual-evaluation metric names, logged with step = global optimizer step."""
    out = {f"cl_acc_w{j}": a for j, a in enumerate(point.accuracies)}
    if point.old_accuracy is not None:
        out["cl_acc_old"] = point.old_accuracy
    return out


# Up to this many windows a run logs one metric per window j (acc_w<j>, cl_acc_w<j>): a row
# of R per window, T^2 values over the stream. Past it, per window only fixed summaries
# (acc_new, acc_worst, cl_acc_new, cl_acc_old), so a 200-window stream logs O(T) values;
# the whole matrix and curve are the run's artifacts (accuracy_matrix.csv, continual.csv).
PER_WINDOW_METRICS_UP_TO = 16


# A long stream's window scalars left to the seed's summary and record (window_points).
LONG_STREAM_UNLOGGED = (*RUN_TOTALS, "seconds")


def compact_metrics(num_windows: int) -> bool:
    return num_windows > PER_WINDOW_METRICS_UP_TO


def window_curve(record: WindowRecord, compact: bool = False) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics) of a window's continual points. The pre-window point shares its step
    with the previous window's last point (the same model): only the new window's accuracy
    is new there, so each metric has one value per step."""
    new = f"cl_acc_w{record.window}"
    if compact and len(record.points) <= 2:
        # Evaluated only at the window's start and end: the start is the matrix's row before
        # (accuracy_matrix.csv), the end this window's acc_new / acc_seen. A long stream logs
        # only curves with points inside windows (evaluation.every_steps), where a dip shows.
        return []
    curve = [(p.step, curve_metrics(p)) for p in map(EvalPoint.from_dict, record.points)]
    if compact:
        curve = [(step, {"cl_acc_new": m[new], **({"cl_acc_old": m["cl_acc_old"]} if "cl_acc_old" in m else {})})
                 for step, m in curve]
        new = "cl_acc_new"
    if record.window > 1 and curve:
        curve[0] = (curve[0][0], {new: curve[0][1][new]})
    return curve


def window_points(record: WindowRecord, earlier: Sequence[WindowRecord], num_windows: int = 0) -> list[tuple[int, dict[str, float]]]:
    """Everything window `record` adds to its seed's run, as (step, metrics) for one batched
    call: its scalars at step = window, its continual points at their optimizer steps, and
    its per-epoch losses continuing the stream's loss curves (step = epochs so far, counted
    over `earlier` windows, so a resumed run logs the same steps). A stream of more than
    PER_WINDOW_METRICS_UP_TO windows logs fixed summaries instead of a value per window."""
    compact = compact_metrics(num_windows)
    scalars = {(f"window/{k}" if k in RUN_TOTALS else k): v for k, v in record.summary.items()
               if not (compact and ((k.startswith("acc_w") and k[5:].isdigit()) or k in LONG_STREAM_UNLOGGED))}
    if compact:
        # A long stream's window logs accuracy and losses only: its time and system figures
        # (seconds, RUN_TOTALS, rows) are in the seed's summary and record. Each value costs
        # the tracking server about 0.15 ms; on a 200-window stream of 1.5 ms windows those
        # five and the boundary points of window_curve made tracking cost as much as
        # training (benchmarks/parallel.py).
        seen = record.accuracies[: record.window + 1]
        scalars |= {"acc_new": record.accuracies[record.window], "acc_worst": min(seen)}
    else:
        scalars["window/train_rows"] = float(record.train_rows)
    points = [(record.window, scalars), *window_curve(record, compact)]
    for phase, values in sorted(record.losses.items()):
        offset = sum(len(w.losses.get(phase, [])) for w in earlier)
        points += [(offset + i, {f"loss_{phase}": v}) for i, v in enumerate(values)]
    return points


def logged_summary(metrics: Mapping[str, float], num_windows: int) -> dict[str, float]:
    """The seed's summary as its MLflow run gets it: on a long stream, without the
    stability gap of each window (`gap_depth_w<k>`, `gap_recovery_steps_w<k>`: two columns per
    window in the runs table); their mean `gap_depth` stays, and results/ keeps them all."""
    if not compact_metrics(num_windows):
        return dict(metrics)
    return {k: v for k, v in metrics.items() if not k.startswith(("gap_depth_w", "gap_recovery_steps_w"))}


def seed_result(baseline: Sequence[float], windows: Sequence[WindowRecord], gap_tolerance: float) -> SeedResult:
    matrix = np.array([list(baseline), *[w.accuracies for w in windows]])
    points = [EvalPoint.from_dict(p) for w in windows for p in w.points]
    gaps = {w.window: stability_gap(points, w.window, gap_tolerance) for w in windows}
    depths = [g["depth"] for g in gaps.values() if g["depth"] is not None]
    metrics = summarize(matrix) | {
        "min_acc": min_accuracy(points),
        "wc_acc": worst_case_accuracy(points),
        "gap_depth": float(np.mean(depths)) if depths else 0.0,
        "seconds_per_window": float(np.mean([w.summary["seconds"] for w in windows])),
        "samples_per_second": float(np.mean([w.summary["samples_per_second"] for w in windows])),
        "fast_state_bytes": float(max(w.summary["fast_state_bytes"] for w in windows)),
        "peak_memory_mb": float(max(w.summary["peak_memory_mb"] for w in windows)),
    }
    for window, gap in gaps.items():
        metrics[f"gap_depth_w{window}"] = gap["depth"] if gap["depth"] is not None else 0.0
        if gap["recovery_steps"] is not None:
            metrics[f"gap_recovery_steps_w{window}"] = gap["recovery_steps"]
    return SeedResult(matrix, points, metrics)


def method_summary(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(mean and std over seeds of every metric the inputs determine, with the mean accuracy
    matrix; this run's facts: tracking run ids, registry version, mean and std of timings)."""
    pure = [split_facts(r)[0] for r in records]
    stats = aggregate_seeds([{k: v for k, v in r.items() if k not in ("seed", "fingerprint")} for r in pure])
    timings = aggregate_seeds([{k: r[k] for k in TIMINGS if k in r} for r in records])
    facts = {"mlflow_run_ids": [r.get("mlflow_run_id") for r in records], "model_version": records[0].get("model_version"),
             "timings": timings}
    return {"matrix_mean": np.mean([r["matrix"] for r in records], axis=0).tolist(), **stats}, facts
