"""Tasks for methods over the stream. The unit of work is one method entry x one seed
(`run_unit`, one Prefect task, run on a Dask worker or in the flow's process): open its
MLflow run, absorb each window (state handed over through atomic checkpoints, so a unit
killed anywhere resumes at its first unfinished window, on any worker), close with the
summary. The flow's process then aggregates the seeds. Each step loads
(components/workspace.py), calls components/, and records (adapters/mlflow_store.py); the
numbers come from components/.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from distributed.worker import print as say  # on a Dask worker: also printed by the stage that submitted the unit
from prefect import task
from prefect.cache_policies import NO_CACHE

from adapters import mlflow_store as tracking
from components.errors import SlowfastError
from components.checkpoint import load_state, save_json, save_state
from components.evaluation import ContinualEvaluator
from components.methods import entry_config, load_method, method_files, method_type, parse_method_config
from components.plots import accuracy_heatmap, continual_csv, matrix_csv, progress_line
from components.progress import (
    Progress, WindowRecord, begin_flow, end_flow, file_digest, fingerprint, finished_by_flow, load_progress, resumable,
    save_progress, stage_code_digest, tree_digest,
)
from components.models import CUSTOM_MODELS
from components.protocol import absorb_window
from components.evaluation import evaluate_windows
from components.runtime import peak_memory_mb, window_seed
from components.summary import (
    UNIT_COSTS, SeedResult, compact_metrics, logged_summary, method_summary, seed_result, split_facts, window_metrics, window_points,
)
from components.workspace import Unit, Workspace, open_workspace

class UnitFailed(SlowfastError):
    """A unit stopped on a user error; the message names the entry and seed."""


SEED_FILES = ("metrics.json", "accuracy_matrix.csv", "accuracy_matrix.png", "continual.csv")
# A unit sends its finished windows' metrics at most this often (and after the last window):
# a window that takes longer is sent on its own, as soon as it ends.
FLUSH_SECONDS = 2.0


@dataclass
class OpenedRun:
    """A seed's MLflow run, ready for its next window; or the record of a seed already done."""

    run_id: str = ""
    fingerprint: str = ""  # of the unit's inputs, as computed when the run opened
    baseline: list[float] = field(default_factory=list)
    num_windows: int = 0
    windows: list[WindowRecord] = field(default_factory=list)  # finished by an interrupted run of the same work
    finished: dict | None = None

    @property
    def end_step(self) -> int:
        return self.windows[-1].end_step if self.windows else 0


def _open(unit: Unit) -> Workspace:
    ws = open_workspace(unit.params_path, unit.root)
    tracking.configure_retries(ws.params.tracking)
    return ws


def _fingerprint(ws: Workspace, unit: Unit) -> str:
    """Everything a method's numbers depend on: a change in any of it means start over (and
    an unchanged one means its finished results are kept)."""
    p = ws.params
    raw = entry_config(p.methods, unit.entry)
    _, other_methods = method_files(method_type(unit.entry, raw).name)
    custom = tree_digest(ws.layout.root / CUSTOM_MODELS) if p.model.kind == "custom" else ""  # the user's model code
    return fingerprint(
        ws.stream.manifest.content_hash, file_digest(ws.layout.slow_model), raw, unit.seed, p.model.model_dump(),
        p.evaluation.model_dump(), p.threads, str(ws.device), stage_code_digest("stream", other_methods), custom,
    )


@task(name="kept-method", cache_policy=NO_CACHE)
def kept_method(entry: str, params_path: str, root: str) -> dict | None:
    """The method's summary if its results on disk came from exactly these inputs (every
    seed's fingerprint matches and its files are there): nothing to train or log. Else None."""
    ws = _open(Unit(entry, 0, params_path, root))
    try:
        summary = json.loads((ws.layout.method_results(entry) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    try:  # absent in a fresh clone: the results stand, the tracking facts are unknown here
        summary |= json.loads(ws.layout.method_record(entry).read_text())
    except (OSError, ValueError):
        summary |= {"mlflow_run_ids": [], "model_version": None, "timings": {"mean": {}, "std": {}}}
    current = {str(seed): _fingerprint(ws, Unit(entry, seed, params_path, root)) for seed in ws.params.seeds}
    if summary.get("fingerprints") != current:
        return None
    if not all((ws.layout.seed_results(entry, seed) / name).is_file() for seed in ws.params.seeds for name in SEED_FILES):
        return None
    runs = ", ".join(r[:8] for r in summary["mlflow_run_ids"] if r) or "not recorded in this checkout"
    print(f"[{entry}] unchanged since its results were written: kept ({len(current)} seed(s), ACC "
          f"{summary['mean']['acc']:.3f}; MLflow runs {runs})", flush=True)
    return summary


@task(name="remove-stale-results", cache_policy=NO_CACHE)
def remove_stale_results(entries: list[str], params_path: str, root: str) -> list[str]:
    """results/methods/ holds exactly the entries under `methods:` (a persisted DVC output,
    so DVC does not clear it): folders of removed entries go."""
    layout = open_workspace(params_path, root).layout
    methods_dir = layout.methods_results
    stale = sorted(p.name for p in methods_dir.iterdir() if p.is_dir() and p.name not in entries) \
        if methods_dir.is_dir() else []
    for name in stale:
        shutil.rmtree(methods_dir / name)
        shutil.rmtree(layout.run_records / name, ignore_errors=True)
        layout.method_record(name).unlink(missing_ok=True)
        print(f"[stream] results/methods/{name}: no longer under methods: in {params_path}, removed", flush=True)
    return stale


@task(name="begin-method-flow", cache_policy=NO_CACHE)
def begin_method_flow(entry: str, params_path: str, root: str) -> str:
    """This flow's id over `entry`: the interrupted flow's, whose finished seeds are kept."""
    return begin_flow(open_workspace(params_path, root).layout.flow_marker(entry))


def end_method_flow(entry: str, flow_id: str, params_path: str, root: str) -> None:
    end_flow(open_workspace(params_path, root).layout.flow_marker(entry), flow_id)


@task(name="run-unit", cache_policy=NO_CACHE)
def run_unit(unit: Unit, flow_id: str, register: bool, tracking_uri: str = "") -> dict:
    """One method entry x one seed over the whole stream: its seed record (with what the
    unit cost: wall seconds, training and evaluation seconds, MLflow calls and retries).

    `tracking_uri` is the store the flow chose (a loopback server when units run in other
    processes); a worker on another machine is handed it here rather than by environment."""
    if tracking_uri:
        tracking.use_store(tracking_uri)
    start, started, calls = time.perf_counter(), time.time(), dict(tracking.CALLS)
    work = [0.0]
    try:
        record, trained = _run_unit(unit, flow_id, register, work)
    except SlowfastError as error:
        if isinstance(error, UnitFailed):
            raise
        raise UnitFailed(f"{unit.entry} seed {unit.seed}: {error}") from None
    if not trained:  # finished by an interrupted run: nothing was done now
        return record
    costs = {
        "unit_seconds": time.perf_counter() - start, "work_seconds": work[0],
        "mlflow_calls": tracking.CALLS["count"] - calls["count"], "mlflow_seconds": tracking.CALLS["seconds"] - calls["seconds"],
        "mlflow_model_seconds": tracking.CALLS["model_seconds"] - calls["model_seconds"],
        "mlflow_retries": tracking.CALLS["retries"] - calls["retries"],
        "unit_started": started, "unit_ended": time.time(),
    }
    record |= costs
    _save_seed_record(_open(unit), unit, record)
    return record


def _run_unit(unit: Unit, flow_id: str, register: bool, work: list[float]) -> tuple[dict, bool]:
    """(the seed's record, whether it was trained now rather than kept)."""
    opened = open_method_run(unit, flow_id, work)
    if opened.finished is not None:
        return opened.finished, False
    try:
        windows = opened.windows  # finished by an interrupted run of the same work
        flushed = time.monotonic()
        for k in range(len(windows) + 1, opened.num_windows):
            windows.append(absorb(unit, k, opened.run_id, windows[-1].end_step if windows else 0, work))
            if time.monotonic() - flushed >= FLUSH_SECONDS and k < opened.num_windows - 1:  # the rest go with the summary
                log_unlogged(unit, opened.run_id)
                flushed = time.monotonic()
        return close_method_run(unit, opened, windows, register), True
    except BaseException:
        tracking.end_run(opened.run_id, "FAILED")
        raise


def open_method_run(unit: Unit, flow_id: str = "", work: list[float] | None = None) -> OpenedRun:
    """Start the parent MLflow run and evaluate the untouched slow model (row 0 of R), or
    resume an interrupted run of the same work from its last finished window. A seed that
    flow `flow_id` finished before it was interrupted is kept (`finished`)."""
    ws = _open(unit)
    p, manifest, entry, seed = ws.params, ws.stream.manifest, unit.entry, unit.seed
    config = parse_method_config(entry, entry_config(p.methods, entry))
    directory = ws.layout.seed_state(entry, seed)
    current = _fingerprint(ws, unit)
    previous = load_progress(directory)
    if finished_by_flow(previous, current, flow_id):
        return OpenedRun(finished=_restore_finished_seed(ws, unit, previous))
    if previous is not None and not previous.complete:
        tracking.mark_interrupted(previous.run_id)  # its process died: nothing else will end it
    kind = method_type(entry, entry_config(p.methods, entry))
    params = {"method": entry, "method_type": kind.name, "reference": kind.reference or "no", "seed": seed,
              **{f"method.{k}": v for k, v in kind.used_config(config).items() if k != "method"},
              "model": p.model.model_dump(), "evaluation": p.evaluation.model_dump(), "slow_model": "models/slow/model.pt"}
    tags = {
        "method": entry, "method_type": kind.name, "seed": str(seed), "stream": manifest.name,
        "stream_hash": manifest.content_hash, "phase": "stream", "fingerprint": current,
        "params_digest": fingerprint(params)[:16],  # the same knobs give the same digest, run after run
    } | _tuning_tags(ws, entry)
    if resumable(previous, current):
        assert previous is not None
        tags |= {"resumed_from": previous.run_id, "resumed_at_window": str(previous.next_window)}
        run_id = tracking.start_run(manifest.name, f"{entry}-seed{seed}", tags=tags, params=params)
        tracking.log_stream_input(run_id, manifest, ws.stream.root, "stream")
        progress = Progress(current, run_id, previous.baseline, previous.windows, False,
                            [*previous.resumed_from, previous.run_id], flow_id=flow_id)
        save_progress(directory, progress)
        _log_windows(ws, unit, run_id, progress.unlogged(), progress)  # finished but killed before they were sent
        say(f"[{entry} seed {seed}] resuming at window {progress.next_window} "
              f"(run {previous.run_id[:8]} was interrupted; marked FAILED)", flush=True)
    else:
        # The slow model is read (and a broken one refused) before a tracking run exists;
        # checkpoints of other work are removed only once the new run has started.
        began = time.perf_counter()
        baseline = evaluate_windows(load_method(ws, entry, seed=seed).predictor(), ws.stream)
        if work is not None:
            work[0] += time.perf_counter() - began
        row = {} if compact_metrics(ws.stream.num_windows) else {f"acc_w{j}": a for j, a in enumerate(baseline)}
        run_id = tracking.start_run(manifest.name, f"{entry}-seed{seed}", tags=tags, params=params,
                                    metrics=row | {"acc_seen": baseline[0]})
        shutil.rmtree(directory, ignore_errors=True)
        tracking.log_stream_input(run_id, manifest, ws.stream.root, "stream")
        progress = Progress(current, run_id, baseline, flow_id=flow_id)
        save_progress(directory, progress)
    return OpenedRun(run_id, current, progress.baseline, ws.stream.num_windows, progress.windows)


def _tuning_tags(ws: Workspace, entry: str) -> dict[str, str]:
    """An `<entry>-tuned` run names where its knobs came from: the tuning stream, the
    Optuna study and (in the checkout that tuned it) the method's tuning run in MLflow."""
    base = entry.removesuffix("-tuned")
    if base == entry or not ws.layout.chosen_configs.is_file():
        return {}
    choice = json.loads(ws.layout.chosen_configs.read_text())["methods"].get(base)
    if choice is None:
        return {}
    tags = {"tuned_from": base, "tuning_stream": choice["tuning_stream"], "tuning_study": choice["study"]}
    try:
        tags["tuning_run"] = json.loads((ws.layout.tune_records / f"{base}.json").read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        pass  # a checkout whose results/tune came from DVC: the study names the search
    return tags


def absorb(unit: Unit, window: int, parent_run_id: str, start_step: int = 0, work: list[float] | None = None) -> WindowRecord:
    """Fast step on one window plus consolidation, evaluated continually and at the end.

    The checkpoint and the window's record are on disk before its metrics are sent, so a
    kill at any point loses at most this window's training (components/progress.py). Its
    metrics wait for `log_unlogged` (the record says they were not sent yet)."""
    ws = _open(unit)
    entry, seed, e, layout = unit.entry, unit.seed, ws.params.evaluation, ws.layout
    directory = layout.seed_state(entry, seed)
    progress = load_progress(directory)
    if progress is None or progress.run_id != parent_run_id or progress.next_window != window:
        raise RuntimeError(f"{directory}: progress does not expect window {window} of run {parent_run_id}")
    began = time.perf_counter()
    evaluator = ContinualEvaluator(ws.stream, e.every_steps, e.subset_rows, seed, step=start_step, prequential=e.prequential)
    previous = load_state(layout.window_state(entry, seed, window - 1)) if window > 1 else None
    method = load_method(ws, entry, seed=window_seed(seed, window), state=previous,
                         on_step=evaluator.on_step, before_step=evaluator.before_step)
    evaluator.start_window(window, method.predictor())
    result = absorb_window(method, ws.stream, window)
    evaluator.end_window(method.predictor())
    if work is not None:
        work[0] += time.perf_counter() - began
    save_state(method.state_dict(), layout.window_state(entry, seed, window))

    summary = window_metrics(
        result.seconds, result.report.samples_seen, result.report.fast_state_bytes, peak_memory_mb(ws.device),
        result.accuracies, result.seen_accuracy, evaluator.prequential_accuracy,
    )
    record = WindowRecord(window, result.accuracies, [p.as_dict() for p in evaluator.points], evaluator.step,
                          summary, result.report.losses, len(ws.stream.window(window).y_train))
    progress.windows.append(record)
    save_progress(directory, progress)
    say(f"[{entry} seed {seed}] {progress_line(window, ws.stream.num_windows - 1, result.seconds, result.accuracies)}",
        flush=True)
    return record


def log_unlogged(unit: Unit, parent_run_id: str) -> None:
    """Send every finished window whose metrics have not reached the store yet."""
    ws = _open(unit)
    progress = load_progress(ws.layout.seed_state(unit.entry, unit.seed))
    if progress is None or progress.run_id != parent_run_id:
        raise RuntimeError(f"{ws.layout.seed_state(unit.entry, unit.seed)}: no progress of run {parent_run_id}")
    _log_windows(ws, unit, parent_run_id, progress.unlogged(), progress)


def _log_windows(ws: Workspace, unit: Unit, parent_run_id: str, records: list[WindowRecord], progress: Progress,
                 also: list[tuple[int, dict[str, float]]] | None = None) -> None:
    """Windows' scalars, continual points and loss curves (and `also`: (step, metrics)) on the
    seed's run in one batched call (one per 1,000 values), then the records are marked logged
    (one write of progress.json). Windows shorter than FLUSH_SECONDS share a call: on a
    200-window stream of tiny windows one call per window cost more than the training."""
    points = list(also or [])
    for record in records:
        earlier = [w for w in progress.windows if w.window < record.window]
        points += window_points(record, earlier, ws.stream.num_windows)
    if not points:
        return
    tracking.log_points(parent_run_id, points)
    for record in records:
        record.logged = True
    save_progress(ws.layout.seed_state(unit.entry, unit.seed), progress)


def close_method_run(unit: Unit, opened: OpenedRun, windows: list[WindowRecord], register: bool) -> dict:
    """Summary metrics, accuracy matrix (CSV + heatmap), continual curve; the model logged
    and registered when `register` (one seed per method carries the registry version)."""
    ws = _open(unit)
    entry, seed, layout, manifest = unit.entry, unit.seed, ws.layout, ws.stream.manifest
    result = seed_result(opened.baseline, windows, ws.params.evaluation.gap_tolerance)
    out = _write_seed_files(ws, unit, result)
    directory = layout.seed_state(entry, seed)
    progress = load_progress(directory)
    if progress is None or progress.run_id != opened.run_id:
        raise RuntimeError(f"{directory}: no progress of run {opened.run_id}")
    last, summary = len(windows), logged_summary(result.metrics, ws.stream.num_windows)
    # the windows not sent yet and (unless it goes with the model) the summary, in one call
    _log_windows(ws, unit, opened.run_id, progress.unlogged(), progress, also=[] if register else [(last, summary)])
    for name in ("accuracy_matrix.csv", "accuracy_matrix.png", "continual.csv"):
        tracking.log_artifact(opened.run_id, out / name)

    record = {"method": entry, "seed": seed, "mlflow_run_id": opened.run_id, "stream_hash": manifest.content_hash,
              "fingerprint": opened.fingerprint, "matrix": result.matrix.tolist(), **result.metrics}
    if register:
        final = load_method(ws, entry, seed=seed, state=load_state(layout.window_state(entry, seed, len(windows))))
        example = ws.stream.window(0).x_test[:4].cpu().numpy()
        record["model_version"] = tracking.log_and_register_model(
            opened.run_id, final.predictor(), example, tracking.registered_model_name(manifest.name),
            {"method": entry, "seed": str(seed), "stream_hash": manifest.content_hash, "fingerprint": record["fingerprint"]},
            manifest.class_names, step=last, metrics=summary,
        )  # the summary on the run and the model's page; ends the parent run as FINISHED
        save_state(final.predictor().state_dict(), out.parent / "model.pt")
    else:
        tracking.end_run(opened.run_id)
    _save_seed_record(ws, unit, record)
    progress.complete, progress.record = True, record
    save_progress(directory, progress)
    return record


def _save_seed_record(ws: Workspace, unit: Unit, record: dict) -> None:
    """The record's input-determined part into results/ (DVC), the run's facts beside it."""
    pure, facts = split_facts(record)
    save_json(pure, ws.layout.seed_results(unit.entry, unit.seed) / "metrics.json")
    save_json(facts, ws.layout.seed_record(unit.entry, unit.seed))


def _write_seed_files(ws: Workspace, unit: Unit, result: SeedResult) -> Path:
    """results/methods/<entry>/seed<k>/: the accuracy matrix (CSV + heatmap) and the curve."""
    out = ws.layout.seed_results(unit.entry, unit.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy_matrix.csv").write_text(matrix_csv(result.matrix))
    (out / "continual.csv").write_text(continual_csv(result.points))
    accuracy_heatmap(result.matrix, f"{unit.entry} (seed {unit.seed}) on {ws.stream.manifest.name}",
                     out / "accuracy_matrix.png")
    return out


def _restore_finished_seed(ws: Workspace, unit: Unit, progress: Progress) -> dict:
    """A seed the interrupted flow had finished: its files again (DVC removed the stage's
    outputs before the rerun) from the record and checkpoints, nothing trained or logged."""
    record = dict(progress.record or {}, fingerprint=progress.fingerprint)
    result = seed_result(progress.baseline, progress.windows, ws.params.evaluation.gap_tolerance)
    out = _write_seed_files(ws, unit, result)
    if "model_version" in record:
        state = load_state(ws.layout.window_state(unit.entry, unit.seed, len(progress.windows)))
        final = load_method(ws, unit.entry, seed=unit.seed, state=state)
        save_state(final.predictor().state_dict(), out.parent / "model.pt")
    _save_seed_record(ws, unit, record)
    say(f"[{unit.entry} seed {unit.seed}] finished by the interrupted run {progress.run_id[:8]}: kept", flush=True)
    return record


@task(name="summarize-seeds", cache_policy=NO_CACHE)
def summarize_seeds(entry: str, records: list[dict], params_path: str, root: str) -> dict:
    """Mean and std over seeds: the method's line in the comparison, with what its units
    cost in MLflow calls and seconds (summed over the units trained in this run)."""
    stats, facts = method_summary(records)
    summary = {
        "method": entry,
        "seeds": [r["seed"] for r in records],
        "stream_hash": records[0]["stream_hash"],
        "fingerprints": {str(r["seed"]): r["fingerprint"] for r in records},
        **stats,
    }
    facts |= {name: sum(r.get(name, 0) for r in records) for name in UNIT_COSTS}
    layout = open_workspace(params_path, root).layout
    save_json(summary, layout.method_results(entry) / "metrics.json")
    save_json(facts, layout.method_record(entry))
    return summary | facts
