"""Flow: the tune stage. For each entry in `tune.methods`, an Optuna study searches its
knobs on the tuning stream (`tune.stream`, checked to share no row with the evaluation
stream); trials run as Prefect tasks on the same Dask cluster as the stream stage's units,
one trial per method at a time (methods side by side), so each study's history, and so its
next draw, is the same whatever the number of workers. The chosen configurations go to
results/tune/chosen.json, which the stream stage evaluates as `<entry>-tuned`.

A study is named by everything its numbers depend on but the budget: a method whose search
did not change is not tuned again, and a killed run resumes its studies where they stood.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the stage: nothing to run, or its workers' fork server imports their stack meanwhile
    from adapters.fork_server import start_early
    from flows._empty import exit_if_nothing_to_run, nothing_to_tune

    exit_if_nothing_to_run(sys.argv[1:], lambda params: not params.tune.methods, nothing_to_tune)
    start_early(sys.argv[1:], lambda params: bool(params.tune.methods))  # as main() decides

import json
import time
from contextlib import ExitStack
from pathlib import Path

import dask
from prefect import flow
from prefect.futures import as_completed

from adapters import dask_cluster, engine
from adapters import mlflow_store as tracking
from components.checkpoint import save_json
from components.errors import ParamsError, SlowfastError
from components.workspace import open_workspace
from flows._cli import REPO_ROOT
from flows._empty import nothing_to_tune
from tasks.tune import (
    Study, ask, fail_interrupted, finished_trials, load, open_study, prepare_tuning, run_trial, storage_url, write_choices,
)


def _remaining(params, layout, study: Study) -> int:  # noqa: ANN001
    return params.tune.trials - len(finished_trials(load(params, layout, study.name)))


def _parent_run(ws, study: Study, tuning: dict) -> str:  # noqa: ANN001
    """The method's tuning run for this flow (a killed one is marked and named as resumed)."""
    p, path = ws.params, ws.layout.tune_records / f"{study.entry}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    tags = {"phase": "tune", "method": study.entry, "study": study.name, "objective": p.tune.objective,
            "sampler": p.tune.sampler, "tuning_stream": tuning["stream"], "tuning_stream_hash": tuning["stream_hash"],
            "evaluation_stream": p.stream.name}
    if previous.get("study") == study.name and not previous.get("complete"):
        tracking.mark_interrupted(previous["run_id"])
        tags["resumed_from"] = previous["run_id"]
    space = {k: v.model_dump(exclude_defaults=True) for k, v in study.space.items()}
    run_id = tracking.start_run(f"{p.stream.name}-tuning", f"{study.entry}-tuning", tags=tags,
                                params={"method": study.entry, "trials": p.tune.trials, "space": space})
    save_json({"study": study.name, "run_id": run_id, "complete": False}, path)
    return run_id


def _run_trials(ws, params_path: str, root: str, studies: list[Study], parents: dict[str, str], tuning: dict,
                in_process: bool, done: list[dict]) -> list[BaseException]:  # noqa: ANN001
    """Each study's trials one after another; studies side by side on the cluster. What
    each trial reported goes to `done`."""
    p, uri, errors = ws.params, tracking.tracking_uri(), []
    if in_process:
        for study in studies:
            while _remaining(p, ws.layout, study) > 0:
                done.append(run_trial(ask(params_path, root, study, tuning, parents[study.entry], uri)))
        return errors
    pending = {}
    with dask.annotate(**dask_cluster.unit_annotations(p.parallel)):
        for study in studies:
            if _remaining(p, ws.layout, study) > 0:
                pending[run_trial.submit(ask(params_path, root, study, tuning, parents[study.entry], uri))] = study
        while pending:
            future = next(as_completed(list(pending)))
            study = pending.pop(future)
            outcome = future.result(raise_on_failure=False)
            if isinstance(outcome, BaseException):
                errors.append(outcome)  # this study stops; the others go on
                continue
            done.append(outcome)
            if _remaining(p, ws.layout, study) > 0:
                pending[run_trial.submit(ask(params_path, root, study, tuning, parents[study.entry], uri))] = study
    return errors


@flow(name="slow-fast-tune")
def tune_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT), in_process: bool = True) -> dict:
    ws = open_workspace(params_path, root, tuned=False)
    p = ws.params
    if not p.tune.methods:
        nothing_to_tune(Path(root), p)
        return {}
    tuning = prepare_tuning(params_path, root)
    studies = [open_study(params_path, root, entry, tuning) for entry in p.tune.methods]
    parents: dict[str, str] = {}
    for study in studies:
        interrupted = fail_interrupted(load(p, ws.layout, study.name))
        left = _remaining(p, ws.layout, study)
        if left <= 0:
            print(f"[{study.entry}] study {study.name}: {p.tune.trials} trial(s) finished earlier: kept", flush=True)
            continue
        parents[study.entry] = _parent_run(ws, study, tuning)
        note = f"; {interrupted} interrupted trial(s) asked again" if interrupted else ""
        print(f"[{study.entry}] study {study.name}: {left} trial(s) to run{note}", flush=True)
    done: list[dict] = []
    began = time.perf_counter()
    errors = _run_trials(ws, params_path, root, [s for s in studies if s.entry in parents], parents, tuning, in_process,
                         done)
    if done:
        wall, workers = time.perf_counter() - began, 1 if in_process else max(1, p.parallel.workers)
        work = sum(t["work_seconds"] for t in done)
        print(f"[tune] {len(done)} trial(s) in {wall:.1f} s on {workers} worker(s); fixed cost per trial "
              f"{(wall * workers - work) / len(done):.2f} s (wall x workers - training and evaluation, per trial; "
              f"idle workers at the end count)", flush=True)
    if errors:
        for study in studies:
            if study.entry in parents:
                tracking.end_run(parents[study.entry], "FAILED")
        first = next((e for e in errors if isinstance(e, SlowfastError)), errors[0])
        for other in errors:
            if other is not first and not isinstance(other, SlowfastError):
                print(f"error: {str(other).splitlines()[0] if str(other) else type(other).__name__}", file=sys.stderr)
        raise first
    chosen = write_choices(params_path, root, studies, tuning)
    for study in studies:
        if study.entry in parents:
            _close_parent(ws, study, parents[study.entry], chosen[study.entry])
    for entry, choice in chosen.items():
        knobs = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in choice["config"].items())
        print(f"[{entry}] chosen on {choice['tuning_stream']} ({choice['trials']} trials, {choice['pruned']} pruned): "
              f"{choice['objective']} {choice['value']:.3f} with {knobs}", flush=True)
    return chosen


def _close_parent(ws, study: Study, run_id: str, choice: dict) -> None:  # noqa: ANN001
    trials = ws.layout.tune_results / "trials"
    tracking.log_metrics(run_id, {f"best_{choice['objective']}": choice["value"], "trials": choice["trials"],
                                  "pruned": choice["pruned"]})
    for name in (f"{study.entry}.csv", f"{study.entry}_history.png", f"{study.entry}_importance.png"):
        if (trials / name).is_file():
            tracking.log_artifact(run_id, trials / name, "tuning")
    tracking.client().set_tag(run_id, "chosen", json.dumps(choice["config"], sort_keys=True))
    tracking.end_run(run_id)
    save_json({"study": study.name, "run_id": run_id, "complete": True}, ws.layout.tune_records / f"{study.entry}.json")


def main(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    """The stage: trials on the Dask cluster `parallel:` names (loopback servers as the
    stream stage starts them), or in this process with `parallel.workers: 0`."""
    ws = open_workspace(params_path, root, tuned=False)
    if ws.params.tune.storage.startswith("sqlite:"):
        # A shared params.yaml must not name a file outside the project (README "Safety of a shared params.yaml").
        raise ParamsError(f"{params_path}: tune.storage: a sqlite study lives in .slowfast/tune/optuna.db; leave "
                          "tune.storage empty for it, or name a database server (postgresql://...)")
    with ExitStack() as stack:
        runner = engine.units_task_runner(stack, ws, (storage_url(ws.params, ws.layout),)) if ws.params.tune.methods else None
        options = {"task_runner": runner} if runner is not None else {}
        return tune_flow.with_options(**options)(params_path=params_path, root=root, in_process=runner is None)


if __name__ == "__main__":
    from flows._cli import run

    run(main, prog="python -m flows.tune", description=__doc__)
