"""Tasks of the scheduled loop (flows/ops.py): ingest a window, absorb what has arrived,
consolidate behind a gate, retrain the slow model on everything so far.

Each task reads the durable state (components/ops/state.py), does its work, and commits
the state atomically after every unit of work, in an order that lets a killed run resume:
checkpoint, then state, then tracking, then "logged". The live loop registers its models
as `slowfast-<stream>-live` with the aliases `champion` (serving) and `challenger` (the
latest fast state that passed the quality gate), apart from the comparison's registry.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from prefect import get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from adapters import mlflow_store as tracking
from adapters.dvc_cli import reproduce_prepare
from components.checkpoint import load_state, save_state
from components.errors import SlowfastError
from components.methods import entry_config
from components.methods.base import Method
from components.ops.drift import detect_drift
from components.ops.live import Live, seen_accuracy, serving_errors
from components.ops.state import (
    Arrival, Decision, OpsState, Release, check_arrivals, load_ops_state, now, promotion, summary_line, window_digest,
)
from components.progress import file_digest
from components.protocol import absorb_window
from components.pretraining import train_slow_model
from components.runtime import configure_torch, window_seed
from components.layout import REPO_ROOT
from components.workspace import open_workspace


def _log() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a flow run (a test or a script): plain logging
        return logging.getLogger("slowfast.ops")


def _say(message: str, warning: bool = False) -> None:
    """One line in the flow run's logs (the Prefect UI); also on stdout when run by hand
    (a worker already shows the run's logs, so it would print twice)."""
    if runtime.deployment.id is None:
        print(message, flush=True)
    (_log().warning if warning else _log().info)(message)


def live_model_name(stream: str) -> str:
    return tracking.registered_model_name(stream) + "-live"


def live_experiment(stream: str) -> str:
    """The live loop's runs have an experiment of their own, apart from the comparison's."""
    return f"{stream}-live"


def open_live(params_path: str, root: str) -> Live:
    """The loop's state for the configured stream, created on first use from the pretrained
    slow model (which becomes the first champion)."""
    ws = open_workspace(params_path, root)
    p = ws.params
    tracking.configure_retries(p.tracking)
    generator = configure_torch(p.threads, p.seed)
    entry_config(p.methods, p.ops.method)  # a one-line error if ops.method names no entry
    directory = ws.layout.ops_dir
    state = load_ops_state(directory)
    if state is not None:
        if (state.method, state.seed) != (p.ops.method, p.ops.seed):
            raise SlowfastError(
                f"{directory / 'state.json'}: the live loop runs method '{state.method}' seed {state.seed}, params.yaml "
                f"ops asks for '{p.ops.method}' seed {p.ops.seed}; set ops back or move {directory} away to start over"
            )
        check_arrivals(state, ws.stream.root)
        return Live(ws, state, generator)
    slow = ws.layout.slow_model
    if not slow.is_file():
        raise SlowfastError(f"{slow}: missing; the live loop starts from the pretrained slow model (`dvc repro pretrain`)")
    state = OpsState(stream=p.stream.name, method=p.ops.method, seed=p.ops.seed, base_digest=file_digest(slow),
                     arrived=[Arrival(window=0, digest=window_digest(ws.stream.root, 0), at=now())])
    live = Live(ws, state, generator)
    directory.mkdir(parents=True, exist_ok=True)
    save_state(load_state(slow), live.base())
    save_state({"method": None, "base": state.base_digest}, live.champion)
    first = live.method(None, 1)
    accuracy = seen_accuracy(first.predictor(), live.view(1))
    run_id = tracking.start_run(live_experiment(p.stream.name), "live-start", tags={"phase": "live-start", "method": p.ops.method})
    version = _register(live, first, run_id, "champion", {"window": "0", "origin": "pretrain"})
    state.champion = Release(version=version, window=0, acc_seen=accuracy, run_id=run_id)
    live.save()
    _say(f"[live] started {summary_line(state)}")
    return live


def _register(live: Live, method: Method, run_id: str, alias: str, tags: dict[str, str]) -> str:
    """Log the method's predictor on `run_id` (ending it), register it and point `alias` at it."""
    stream = live.workspace.stream
    name = live_model_name(stream.manifest.name)
    version = tracking.log_and_register_model(
        run_id, method.predictor(), stream.window(0).x_test[:4].cpu().numpy(), name,
        {"method": live.state.method, "stream_hash": stream.manifest.content_hash, **tags}, stream.manifest.class_names,
    )
    tracking.client().set_registered_model_alias(name, alias, version)
    return version


@task(name="ingest-window", cache_policy=NO_CACHE)
def ingest(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    """Let the next window of the stream arrive (after `dvc repro prepare`, when enabled)."""
    p = open_workspace(params_path, root).params
    if p.ops.reproduce_prepare:
        reproduce_prepare(Path(root), p.tracking.retry_attempts, p.tracking.retry_backoff_seconds, _say)
    live = open_live(params_path, root)
    state, total = live.state, live.workspace.stream.manifest.num_windows
    if state.num_arrived >= total:
        _say(f"[ingest] nothing new: all {total} windows of {state.stream} have arrived")
        return {"ingested": None, "arrived": state.num_arrived}
    k = state.num_arrived
    state.arrived.append(Arrival(window=k, digest=window_digest(live.workspace.stream.root, k), at=now()))
    live.save()
    rows = live.workspace.stream.manifest.windows[k]["rows"]
    _say(f"[ingest] window {k} of {state.stream} arrived ({rows['train']} train / {rows['test']} test rows)")
    return {"ingested": k, "arrived": state.num_arrived}


@task(name="fast-adapt", cache_policy=NO_CACHE)
def fast_adapt(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    """Absorb every arrived window not yet absorbed; register a challenger past the gate."""
    live = open_live(params_path, root)
    state, p = live.state, live.workspace.params
    if state.active_run is not None:  # a fast-adapt was killed: its run never ended
        tracking.mark_interrupted(state.active_run)
    pending = state.to_absorb()
    if not pending and not state.pending_metrics and state.gated == state.absorbed:
        state.active_run = None
        live.save()
        _say(f"[fast-adapt] nothing to absorb: {summary_line(state)}")
        return {"absorbed": [], "drift": None}
    tags = {"phase": "fast-adapt", "method": state.method, "seed": str(state.seed),
            "stream_hash": live.workspace.stream.manifest.content_hash}
    if state.active_run is not None:
        tags["resumed_from"] = state.active_run
    run_id = tracking.start_run(live_experiment(state.stream), "fast-adapt", tags=tags, params={"windows": str(pending)})
    state.active_run = run_id
    live.save()
    for k, metrics in sorted(state.pending_metrics.items()):  # absorbed by a killed run, never logged
        tracking.log_metrics(run_id, metrics, step=k)
        state.logged = k
    state.pending_metrics = {}
    live.save()

    drift, result, method = None, None, None
    for k in pending:
        method = live.method(live.fast_state(k - 1), state.num_arrived, generator_seed=window_seed(state.seed, k))
        if drift is None and p.ops.drift.detector != "off":
            stream = method.context.stream
            model = method.predictor()
            row = detect_drift(serving_errors(model, stream, k - 1), serving_errors(model, stream, k), p.ops.drift)
            if row is not None:
                drift = {"window": k, "row": row}
                _say(f"[fast-adapt] drift detected by {p.ops.drift.detector} at row {row} of window {k}")
        result = absorb_window(method, method.context.stream, k)
        save_state(method.state_dict(), live.fast(k))
        metrics = {"acc_seen": result.seen_accuracy, "seconds": result.seconds,
                   **{f"acc_w{j}": a for j, a in enumerate(result.accuracies[: k + 1])}}
        state.absorbed, state.pending_metrics = k, {k: metrics}
        live.save()
        tracking.log_metrics(run_id, metrics, step=k)
        state.logged, state.pending_metrics = k, {}
        live.save()
        _say(f"[fast-adapt] window {k}: acc over seen windows {result.seen_accuracy:.3f} ({result.seconds:.2f}s)")

    outcome: dict[str, Any] = {"absorbed": pending, "drift": drift}
    if state.gated < state.absorbed:  # also a state absorbed by a run killed before its gate
        if method is None or result is None:
            method = live.method(live.fast_state(state.absorbed), state.absorbed + 1)
        accuracy = result.seen_accuracy if result is not None else seen_accuracy(method.predictor(), live.view(state.absorbed + 1))
        outcome["acc_seen"] = accuracy
        if accuracy >= p.ops.challenger_min_acc:
            version = _register(live, method, run_id, "challenger", {"window": str(state.absorbed)})
            state.challenger = Release(version=version, window=state.absorbed, acc_seen=accuracy, run_id=run_id)
            outcome["challenger"] = version
            _say(f"[fast-adapt] challenger v{version}: acc {accuracy:.3f} >= gate {p.ops.challenger_min_acc}")
        else:
            reason = f"acc over seen windows {accuracy:.4f} below the gate {p.ops.challenger_min_acc}"
            tracking.client().set_tag(run_id, "challenger_refused", reason)
            _say(f"[fast-adapt] no challenger: {reason}", warning=True)
        state.gated = state.absorbed
    if drift is not None:
        tracking.client().set_tag(run_id, "drift", f"window {drift['window']} row {drift['row']}")
    if "challenger" not in outcome:  # registering a challenger ends the run
        tracking.end_run(run_id)
    state.active_run = None
    live.save()
    return outcome


@task(name="consolidate", cache_policy=NO_CACHE)
def consolidate(params_path: str = "params.yaml", root: str = str(REPO_ROOT), trigger: str = "schedule") -> dict:
    """Promote the fast state to champion unless accuracy over every seen window drops by
    more than `ops.promotion_tolerance`; otherwise keep the champion and record why."""
    live = open_live(params_path, root)
    state, p = live.state, live.workspace.params
    if state.absorbed == state.decided:
        last = state.decisions[-1].reason if state.decisions else "nothing absorbed yet"
        _say(f"[consolidate] nothing new since window {state.decided} ({last})")
        return {"decision": None}
    k = state.absorbed
    view = live.view(k + 1)
    candidate = live.method(live.fast_state(k), k + 1)
    champion = live.champion_method(k + 1)
    candidate_acc, champion_acc = seen_accuracy(candidate.predictor(), view), seen_accuracy(champion.predictor(), view)
    promoted, reason = promotion(candidate_acc, champion_acc, p.ops.promotion_tolerance, k)
    run_id = tracking.start_run(
        live_experiment(state.stream), "consolidate",
        tags={"phase": "consolidate", "method": state.method, "trigger": trigger,
              "decision": "promoted" if promoted else "refused", "reason": reason},
    )
    tracking.log_metrics(run_id, {"candidate_acc_seen": candidate_acc, "champion_acc_seen": champion_acc}, step=k)
    if promoted:
        version = _register(live, candidate, run_id, "champion", {"window": str(k), "trigger": trigger})
        save_state({"method": candidate.state_dict(), "base": state.base_digest}, live.champion)
        state.champion = Release(version=version, window=k, acc_seen=candidate_acc, run_id=run_id)
        state.consolidated = k
        _say(f"[consolidate] champion v{version} through window {k}: {reason}")
    else:
        tracking.end_run(run_id)
        _say(f"[consolidate] refused: {reason} (v{state.champion.version if state.champion else '?'})", warning=True)
    state.decided = k
    state.decisions.append(Decision(at=now(), window=k, promoted=promoted, candidate_acc=candidate_acc,
                                    champion_acc=champion_acc, reason=reason, trigger=trigger))
    live.save()
    return {"decision": "promoted" if promoted else "refused", "reason": reason, "window": k}


@task(name="retrain-slow", cache_policy=NO_CACHE)
def retrain_slow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    """A fresh slow model on every window arrived so far, promoted under the same rule as a
    consolidation; when promoted, the fast state starts over on it."""
    live = open_live(params_path, root)
    state, p = live.state, live.workspace.params
    n = state.num_arrived
    if state.retrained == n - 1:
        _say(f"[pretrain-slow] nothing new: the last retraining already saw windows 0..{n - 1}")
        return {"decision": None}
    view = live.view(n)
    model, _ = train_slow_model(p, view, list(range(n)), live.generator, live.workspace.layout.root)
    champion_acc = seen_accuracy(live.champion_method(n).predictor(), view)
    fresh_acc = seen_accuracy(model, view)
    promoted, reason = promotion(fresh_acc, champion_acc, p.ops.promotion_tolerance, n - 1)
    run_id = tracking.start_run(live_experiment(state.stream), "pretrain-slow", tags={
        "phase": "pretrain-slow", "decision": "promoted" if promoted else "refused", "reason": reason})
    tracking.log_metrics(run_id, {"candidate_acc_seen": fresh_acc, "champion_acc_seen": champion_acc}, step=n - 1)
    state.retrained = n - 1
    if promoted:
        staged = live.directory / "base-staged.pt"
        save_state(model.state_dict(), staged)
        digest = file_digest(staged)
        staged.replace(live.base(digest))  # beside the old base: the state still points there
        fresh = live.method(None, n, base=digest)
        version = _register(live, fresh, run_id, "champion", {"window": str(n - 1), "origin": "pretrain-slow"})
        save_state({"method": None, "base": digest}, live.champion)
        state.base_digest = digest
        state.fresh_from = state.absorbed = state.logged = state.consolidated = state.decided = state.gated = n - 1
        state.champion = Release(version=version, window=n - 1, acc_seen=fresh_acc, run_id=run_id)
        shutil.rmtree(live.directory / "fast", ignore_errors=True)  # grown from the old base
        _say(f"[pretrain-slow] champion v{version}: fresh slow model on windows 0..{n - 1}; {reason}")
    else:
        tracking.end_run(run_id)
        _say(f"[pretrain-slow] refused: {reason}", warning=True)
    live.save()
    return {"decision": "promoted" if promoted else "refused", "reason": reason}
