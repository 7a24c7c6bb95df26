"""Hyperparameter search for the tune stage: search spaces, the tuning stream, its
disjointness from the evaluation stream, and one trial over the stream.

Protocol ("Hyperparameters in Continual Learning: a Reality Check"): each method's knobs
are chosen on a *tuning* stream that shares no row with the evaluation stream, then the
chosen configuration is evaluated on the evaluation stream beside the defaults. Optuna does
the searching (adapters-free: it is a library, not a service); the stage's flow and tasks
hand trials to workers and record them (flows/tune.py, tasks/tune.py).

Determinism: a trial's numbers depend only on its configuration and `tune.seed`; the
sampler is seeded per slot (the k-th finished trial of a study), so the same history gives
the same next configuration however many workers ran it and whether the run was killed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from components.config import Params, StreamParams, validate_model
from components.data.loading import Stream
from components.errors import ParamsError
from components.evaluation import ContinualEvaluator, evaluate_windows
from components.methods import Knob, entry_config, load_method, method_type, parse_method_config
from components.metrics import HIGHER_IS_BETTER
from components.progress import WindowRecord
from components.protocol import absorb_window
from components.runtime import peak_memory_mb, window_seed
from components.summary import seed_result, window_metrics
from components.workspace import Workspace

TUNED_SUFFIX = "-tuned"  # the stream stage evaluates `<entry>-tuned` beside `<entry>`


def tuned_entry(entry: str) -> str:
    return f"{entry}{TUNED_SUFFIX}"


def direction(objective: str) -> str:
    return "maximize" if HIGHER_IS_BETTER[objective] else "minimize"


def search_space(params: Params, entry: str, source: str = "params.yaml") -> dict[str, Knob]:
    """The entry's method's own search space with `tune.space.<entry>` applied (a knob given
    an empty mapping is dropped); each range's ends are checked against the method's Config
    so a bad range is one line before any trial runs."""
    raw = entry_config(params.methods, entry)
    cls = method_type(entry, raw, source)
    space = dict(cls.search_space)
    for knob, given in params.tune.space.get(entry, {}).items():
        where = f"tune.space.{entry}.{knob}"
        if knob not in cls.Config.model_fields or knob == "method":
            raise ParamsError(f"{source}: {where}: method '{cls.name}' has no knob {knob!r}; its knobs: "
                              f"{sorted(k for k in cls.Config.model_fields if k != 'method')}")
        if not given:
            space.pop(knob, None)
            continue
        space[knob] = validate_model(Knob, given, source, where)  # type: ignore[assignment]
    if not space:
        raise ParamsError(f"{source}: tune.space.{entry}: every knob was dropped; nothing is left to search")
    for knob, range_ in space.items():
        for value in range_.choices if range_.choices is not None else (range_.low, range_.high):
            value = int(value) if range_.integer and range_.choices is None else value
            parse_method_config(entry, {**raw, knob: value}, f"{source} (tune.space.{entry}.{knob} = {value!r})")
    return space


def suggest(trial: optuna.trial.BaseTrial, space: Mapping[str, Knob]) -> dict[str, Any]:
    """One configuration drawn from `space` (knobs in name order: the draw is reproducible)."""
    chosen: dict[str, Any] = {}
    for name in sorted(space):
        knob = space[name]
        if knob.choices is not None:
            chosen[name] = trial.suggest_categorical(name, knob.choices)
        elif knob.integer:
            chosen[name] = trial.suggest_int(name, int(knob.low), int(knob.high), log=knob.log)
        else:
            chosen[name] = trial.suggest_float(name, knob.low, knob.high, log=knob.log)
    return chosen


def sampler(params: Params, slot: int) -> optuna.samplers.BaseSampler:
    """A sampler seeded for the `slot`-th trial of a study: its draw depends on the study's
    finished trials and the slot only, not on how many draws came before in this process."""
    seed = (params.tune.seed * 1_000_003 + slot) % (2**31)
    if params.tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=params.tune.startup_trials)


def pruner(params: Params) -> optuna.pruners.BasePruner:
    """The median of *completed* trials at the same window: trials running beside this one
    never enter its decision, so pruning does not depend on timing."""
    if not params.tune.pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=params.tune.startup_trials, n_warmup_steps=1)


def tuning_stream(params: Params, source: str = "params.yaml") -> StreamParams:
    """`stream:` with `tune.stream:` applied. Its name defaults to `<stream.name>-tune`; a
    tuning stream that only renames the evaluation stream is refused at once (the row-level
    check, `check_disjoint`, runs once both are prepared)."""
    base = params.stream.model_dump(exclude_none=True)
    merged = {**base, "name": f"{params.stream.name}-tune", **params.tune.stream}
    tuned = validate_model(StreamParams, merged, source, "tune.stream")
    if tuned.name == params.stream.name:
        raise ParamsError(f"{source}: tune.stream.name: the tuning stream needs its own name (got {tuned.name!r}, "
                          "the evaluation stream's)")
    if {k: v for k, v in merged.items() if k != "name"} == {k: v for k, v in base.items() if k != "name"}:
        raise ParamsError(f"{source}: tune.stream: the tuning stream is the evaluation stream under another name; "
                          "set another `seed`, class order or windows")
    return tuned  # type: ignore[return-value]


def _row_digests(stream: Stream) -> dict[bytes, str]:
    """Each row's feature bytes (hashed) -> where it is (window and split)."""
    out: dict[bytes, str] = {}
    for index in range(stream.num_windows):
        window = stream.window(index)
        for split, x in (("train", window.x_train), ("test", window.x_test)):
            rows = np.ascontiguousarray(x.detach().cpu().numpy().astype(np.float32))
            for row in rows:
                out.setdefault(hashlib.blake2b(row.tobytes(), digest_size=16).digest(), f"window {index} {split}")
    return out


def check_disjoint(evaluation: Stream, tuning: Stream) -> None:
    """One line and no tuning when a row (the same feature values) is in both streams."""
    seen = _row_digests(evaluation)
    shared = [(seen[d], where) for d, where in _row_digests(tuning).items() if d in seen]
    if shared:
        first_eval, first_tune = shared[0]
        raise ParamsError(
            f"params.yaml: tune.stream: the tuning stream '{tuning.manifest.name}' shares {len(shared)} row(s) with "
            f"the evaluation stream '{evaluation.manifest.name}' (first: its {first_tune} is the evaluation "
            f"stream's {first_eval}); choose another seed, class order or windows so that no row is in both"
        )


@dataclass
class TrialOutcome:
    metrics: dict[str, float]  # the seed's metrics (acc, bwt, ..., wc_acc) over the windows it ran
    windows: int  # windows absorbed (fewer than the stream's when pruned)
    pruned: bool
    work_seconds: float  # training and evaluation


def run_trial(
    workspace: Workspace, entry: str, config: Mapping[str, Any], seed: int,
    report: Callable[[int, float], bool], clock: Callable[[], float],
) -> TrialOutcome:
    """The entry with `config` over the tuning workspace's stream, exactly as a unit runs
    (the same window seeds, the same continual evaluation), state kept in memory. After
    each window `report(window, accuracy over seen windows)` says whether to stop (pruned)."""
    raw = {**entry_config(workspace.params.methods, entry), **config}
    parse_method_config(entry, raw)
    stream, e = workspace.stream, workspace.params.evaluation
    began = clock()
    baseline = evaluate_windows(load_method(workspace, entry, seed=seed, config=raw).predictor(), stream)
    records: list[WindowRecord] = []
    state = None
    for k in range(1, stream.num_windows):
        step = records[-1].end_step if records else 0
        evaluator = ContinualEvaluator(stream, e.every_steps, e.subset_rows, seed, step=step, prequential=e.prequential)
        method = load_method(workspace, entry, seed=window_seed(seed, k), state=state, config=raw,
                             on_step=evaluator.on_step, before_step=evaluator.before_step)
        evaluator.start_window(k, method.predictor())
        result = absorb_window(method, stream, k)
        evaluator.end_window(method.predictor())
        state = method.state_dict()
        summary = window_metrics(result.seconds, result.report.samples_seen, result.report.fast_state_bytes,
                                 peak_memory_mb(workspace.device), result.accuracies, result.seen_accuracy,
                                 evaluator.prequential_accuracy)
        records.append(WindowRecord(k, result.accuracies, [p.as_dict() for p in evaluator.points], evaluator.step,
                                    summary, result.report.losses, len(stream.window(k).y_train)))
        if k < stream.num_windows - 1 and report(k, result.seen_accuracy):
            return TrialOutcome(_metrics(baseline, records, e.gap_tolerance), k, True, clock() - began)
    return TrialOutcome(_metrics(baseline, records, e.gap_tolerance), len(records), False, clock() - began)


def _metrics(baseline: list[float], records: list[WindowRecord], gap_tolerance: float) -> dict[str, float]:
    if len(records) < len(baseline) - 1:  # pruned: R is not square yet; ACC over what was seen is all there is
        return {"acc_seen": records[-1].summary["acc_seen"]}
    result = seed_result(baseline, records, gap_tolerance)
    return {k: float(v) for k, v in result.metrics.items() if v is not None}
