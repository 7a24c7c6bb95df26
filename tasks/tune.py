"""Tasks of the tune stage: the tuning workspace (its own stream and slow model, under
.slowfast/tune/), one trial (a Prefect task run on a Dask worker, like a unit), and what the
stage writes and records. Search logic and the trial's numbers are components/tuning.py.

A trial reports each window's accuracy to its Optuna trial and tells the study its result
itself, in the worker: a killed stage loses only the trials in flight, which the next run
asks again at the same slot (and so draws the same configuration).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from distributed.worker import print as say
from prefect import task
from prefect.cache_policies import NO_CACHE

from adapters import mlflow_store as tracking
from components.checkpoint import load_state, save_json, save_state
from components.config import Params
from components.data.sources import build_stream
from components.data.stream_io import write_stream
from components.errors import SlowfastError
from components.methods import entry_config, method_files, method_type
from components.models import CUSTOM_MODELS
from components.pretraining import pretrain_slow_model
from components.progress import file_digest, fingerprint, stage_code_digest, tree_digest
from components.tuning import (
    check_disjoint, direction, pruner, run_trial as run_trial_windows, sampler, search_space, suggest, tuning_stream,
)
from components.workspace import Layout, open_workspace

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class TrialFailed(SlowfastError):
    """A trial stopped on a user error; the message names the entry and trial."""


@dataclass(frozen=True)
class TrialSpec:
    """What a worker needs to run one trial: small, plain values."""

    entry: str
    study: str
    storage: str
    number: int  # Optuna's trial number in the study
    slot: int  # the k-th finished trial this one will be
    config: dict[str, Any]
    tune_root: str  # the tuning workspace
    experiment: str
    parent_run_id: str
    tracking_uri: str = ""
    objective: str = "acc"


@dataclass
class Study:
    """One entry's study as the flow drives it."""

    entry: str
    name: str
    fingerprint: str
    space: dict = field(default_factory=dict)


def storage_url(params: Params, layout: Layout) -> str:
    if params.tune.storage:
        return params.tune.storage
    layout.tune_state.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(layout.tune_state / 'optuna.db').resolve()}"


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def storage(url: str) -> optuna.storages.RDBStorage:
    """One storage (engine) per process and URL; sqlite waits up to 60 s for a writer."""
    if url not in _STORAGES:
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {"pool_pre_ping": True}
        _STORAGES[url] = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    return _STORAGES[url]


def _tune_root(layout: Layout) -> Path:
    return layout.tune_state / "workspace"


@task(name="prepare-tuning-stream", cache_policy=NO_CACHE)
def prepare_tuning(params_path: str, root: str) -> dict:
    """The tuning stream and a slow model pretrained on its window 0, in the tuning
    workspace (rebuilt only when what they are made from changed); refused with one line
    when it shares a row with the evaluation stream."""
    ws = open_workspace(params_path, root, tuned=False)
    p, layout = ws.params, ws.layout
    stream_params = tuning_stream(p, params_path)
    tune_root = _tune_root(layout)
    tune_params = p.model_dump(mode="json") | {
        "stream": stream_params.model_dump(mode="json", exclude_none=True), "parallel": {"workers": 0},
    }
    tune_params["methods"] = dict(p.methods)  # as written (opened without `-tuned` entries)
    target = tune_root / "params.yaml"
    text = yaml.safe_dump(tune_params, sort_keys=False)
    tune_root.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)
    custom = tune_root / CUSTOM_MODELS
    if not custom.exists() and (layout.root / CUSTOM_MODELS).is_dir():
        custom.symlink_to((layout.root / CUSTOM_MODELS).resolve())

    tune_layout = Layout(tune_root, stream_params.name)
    stream_key = fingerprint(stream_params.model_dump(mode="json"), stage_code_digest("prepare"))
    marker = tune_layout.stream_dir / "made_from.json"
    if not marker.is_file() or json.loads(marker.read_text()).get("key") != stream_key:
        prepared = build_stream(stream_params, layout.root)
        write_stream(tune_layout.stream_dir, stream_params.name, prepared.windows, prepared.class_names,
                     source={"generator": stream_params.source, **stream_params.model_dump(exclude_none=True)},
                     extra=prepared.extra)
        save_json({"key": stream_key}, marker)
    tune_ws = open_workspace("params.yaml", tune_root)
    check_disjoint(ws.stream, tune_ws.stream)

    slow_key = fingerprint(tune_ws.stream.manifest.content_hash, p.model.model_dump(), p.pretrain.model_dump(), p.seed,
                           p.threads, str(ws.device), stage_code_digest("pretrain"),
                           tree_digest(layout.root / CUSTOM_MODELS) if p.model.kind == "custom" else "")
    info_path = tune_layout.slow_dir / "info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if info.get("key") != slow_key or not tune_layout.slow_model.is_file():
        model, _ = pretrain_slow_model(tune_ws.params, tune_ws.stream, tune_root)
        save_state(model.state_dict(), tune_layout.slow_model)
        info = {"key": slow_key}
        save_json(info, info_path)
    print(f"[tune] tuning stream {stream_params.name}: {tune_ws.stream.num_windows} windows, "
          f"hash {tune_ws.stream.manifest.content_hash[:12]}; no row shared with {p.stream.name}", flush=True)
    return {"root": str(tune_root), "stream": stream_params.name, "stream_hash": tune_ws.stream.manifest.content_hash,
            "slow_model": file_digest(tune_layout.slow_model)}


def open_study(params_path: str, root: str, entry: str, tuning: dict) -> Study:
    """The entry's study, named by everything its trials' numbers depend on except the trial
    budget (raising `tune.trials` continues a study; any other change starts a new one).
    Knobs the search sets are left out of the block's part: changing their value in
    params.yaml changes no trial."""
    ws = open_workspace(params_path, root, tuned=False)
    p = ws.params
    space = search_space(p, entry, params_path)
    raw = entry_config(p.methods, entry)
    kind = method_type(entry, raw)
    fixed = {k: v for k, v in raw.items() if k not in space}  # a searched knob's value in the block is never used
    key = fingerprint(
        kind.name, fixed, {k: v.model_dump() for k, v in sorted(space.items())}, tuning["stream_hash"], tuning["slow_model"],
        p.tune.model_dump(exclude={"trials", "methods", "space", "storage", "stream"}), p.model.model_dump(),
        p.evaluation.model_dump(), p.threads, str(ws.device), stage_code_digest("tune", method_files(kind.name)[1]),
    )
    name = f"{entry}-{key[:12]}"
    optuna.create_study(study_name=name, storage=storage(storage_url(p, ws.layout)), direction=direction(p.tune.objective),
                        load_if_exists=True)
    return Study(entry, name, key, space)


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return sorted((t for t in study.get_trials(deepcopy=False) if t.state in FINISHED), key=lambda t: t.user_attrs["slot"])


def fail_interrupted(study: optuna.Study) -> int:
    """Trials a killed run left RUNNING: failed, so that their slot is asked again."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return len(running)


def load(params: Params, layout: Layout, name: str, slot: int = 0) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage(storage_url(params, layout)),
                             sampler=sampler(params, slot), pruner=pruner(params))


def ask(params_path: str, root: str, study: Study, tuning: dict, parent_run_id: str, uri: str) -> TrialSpec:
    """The next trial of `study` at the next free slot (drawn by the slot's seeded sampler)."""
    ws = open_workspace(params_path, root, tuned=False)
    p = ws.params
    slot = len(finished_trials(load(p, ws.layout, study.name)))
    optuna_study = load(p, ws.layout, study.name, slot)
    trial = optuna_study.ask()
    trial.set_user_attr("slot", slot)
    config = suggest(trial, study.space)
    return TrialSpec(study.entry, study.name, storage_url(p, ws.layout), trial.number, slot, config, tuning["root"],
                     _experiment(p), parent_run_id, uri, p.tune.objective)


def _experiment(params: Params) -> str:
    return f"{params.stream.name}-tuning"


@task(name="run-trial", cache_policy=NO_CACHE)
def run_trial(spec: TrialSpec) -> dict:
    """One trial on a worker: the entry with the trial's configuration over the tuning
    stream, each window's seen accuracy reported to Optuna (which may prune), the result
    told to the study and recorded as a child run of the method's tuning run."""
    if spec.tracking_uri:
        tracking.use_store(spec.tracking_uri)
    began = time.perf_counter()
    tune_ws = open_workspace("params.yaml", spec.tune_root)
    study = optuna.load_study(study_name=spec.study, storage=storage(spec.storage), pruner=pruner(tune_ws.params))
    trial = optuna.trial.Trial(study, study._storage.get_trial_id_from_study_id_trial_number(study._study_id, spec.number))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    run_id = tracking.start_run(
        spec.experiment, f"{spec.entry}-trial{spec.slot:03d}", parent_run_id=spec.parent_run_id,
        tags={"phase": "tune", "method": spec.entry, "study": spec.study, "trial": str(spec.number), "slot": str(spec.slot)},
        params={"method": spec.entry, **{f"method.{k}": v for k, v in spec.config.items()}},
    )
    seen: list[tuple[int, float]] = []

    def report(window: int, seen_accuracy: float) -> bool:
        seen.append((window, seen_accuracy))
        trial.report(seen_accuracy if maximize else 1.0 - seen_accuracy, window)
        return trial.should_prune()

    try:
        outcome = run_trial_windows(tune_ws, spec.entry, spec.config, tune_ws.params.tune.seed, report, time.perf_counter)
    except SlowfastError as error:
        study.tell(spec.number, state=optuna.trial.TrialState.FAIL)
        tracking.end_run(run_id, "FAILED")
        raise TrialFailed(f"{spec.entry} trial {spec.slot}: {error}") from None
    except BaseException:
        tracking.end_run(run_id, "FAILED")
        raise
    value = outcome.metrics.get(spec.objective)
    if outcome.pruned:
        study.tell(spec.number, state=optuna.trial.TrialState.PRUNED)
    elif value is None:
        study.tell(spec.number, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(spec.number, value)
    seconds = time.perf_counter() - began
    metrics = {**outcome.metrics, "duration_seconds": seconds, "work_seconds": outcome.work_seconds,
               "windows": outcome.windows, "pruned": float(outcome.pruned)}
    tracking.log_points(run_id, [(w, {"acc_seen": a}) for w, a in seen] + [(outcome.windows, metrics)])
    tracking.end_run(run_id)
    state = "pruned" if outcome.pruned else (f"{spec.objective} {value:.3f}" if value is not None else "no value")
    say(f"[{spec.entry} trial {spec.slot}] {state} after {outcome.windows} window(s), {seconds:.1f} s  "
        f"{', '.join(f'{k}={_short(v)}' for k, v in spec.config.items())}", flush=True)
    return {"entry": spec.entry, "slot": spec.slot, "value": value, "pruned": outcome.pruned, "seconds": seconds,
            "work_seconds": outcome.work_seconds, "mlflow_run_id": run_id}


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@task(name="write-choices", cache_policy=NO_CACHE)
def write_choices(params_path: str, root: str, studies: list[Study], tuning: dict) -> dict:
    """results/tune/: chosen.json (per entry, the best finished trial among the first
    `tune.trials` slots) and trials/ (every trial as CSV, the search history and the knobs'
    importance as PNG); the tuning runs in MLflow get the same figures."""
    ws = open_workspace(params_path, root, tuned=False)
    p, layout = ws.params, ws.layout
    out = layout.tune_results
    (out / "trials").mkdir(parents=True, exist_ok=True)
    chosen: dict[str, dict] = {}
    for study in studies:
        trials = [t for t in finished_trials(load(p, layout, study.name)) if t.user_attrs["slot"] < p.tune.trials]
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise SlowfastError(f"tune: every trial of {study.entry} was pruned or failed ({len(trials)} trial(s)); "
                                "raise tune.trials or turn tune.pruning off")
        sign = 1 if direction(p.tune.objective) == "maximize" else -1
        best = max(complete, key=lambda t: (sign * t.value, -t.user_attrs["slot"]))
        raw = entry_config(p.methods, study.entry)
        chosen[study.entry] = {
            "method": method_type(study.entry, raw).name, "base": raw, "config": dict(sorted(best.params.items())),
            "objective": p.tune.objective, "value": best.value, "slot": best.user_attrs["slot"],
            "trials": len(trials), "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
            "study": study.name, "tuning_stream": tuning["stream"], "tuning_stream_hash": tuning["stream_hash"],
        }
        (out / "trials" / f"{study.entry}.csv").write_text(_trials_csv(trials, p.tune.objective))
        _figures(load(p, layout, study.name), study.entry, out / "trials")
    save_json({"objective": p.tune.objective, "methods": chosen}, layout.chosen_configs)
    return chosen


def _figures(study: optuna.Study, entry: str, out: Path) -> list[Path]:
    """Optuna's search history and, with two or more completed trials that differ, the
    knobs' importance (fANOVA); each as PNG. Which ones were made is what is returned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    made = []
    figures: list[tuple[str, Any, dict]] = [("history", optuna_plots.plot_optimization_history, {})]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) > 1:
        # fANOVA fits a random forest: seeded, so that a rerun draws the same PNG (a DVC output)
        figures.append(("importance", optuna_plots.plot_param_importances,
                        {"evaluator": optuna.importance.FanovaImportanceEvaluator(seed=0)}))
    for kind, plot, options in figures:
        axes = plot(study, **options)
        axes.set_title(f"{entry}: {kind}")
        path = out / f"{entry}_{kind}.png"
        axes.figure.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(axes.figure)
        made.append(path)
    return made


def _trials_csv(trials: list[optuna.trial.FrozenTrial], objective: str) -> str:
    knobs = sorted({k for t in trials for k in t.params})
    lines = [",".join(["slot", "state", objective, *knobs])]
    for t in trials:
        value = "" if t.value is None else f"{t.value:.6f}"
        lines.append(",".join([str(t.user_attrs["slot"]), t.state.name.lower(), value,
                               *(_short(t.params.get(k, "")) for k in knobs)]))
    return "\n".join(lines) + "\n"
