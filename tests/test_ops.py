"""The scheduled live loop (flows/ops.py) in-process against the Prefect test server and a
real sqlite MLflow store: what it absorbs, what it promotes, what it refuses, and that a
second run on the same data does nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from components.config import DriftTrigger
from components.errors import SlowfastError
from components.ops.drift import detect_drift
from components.ops.state import OpsState, load_ops_state, promotion
from tests.conftest import STREAM, live_params, make_root, write_params

LIVE_MODEL = f"slowfast-{STREAM}-live"


def state_of(root: Path) -> OpsState:
    state = load_ops_state(root / ".slowfast" / "ops" / STREAM)
    assert state is not None
    return state


@pytest.fixture(scope="module")
def live(prefect_api_url, tmp_path_factory):
    """Main job for replay, then the live loop over the same stream in several runs."""
    from flows.ops import consolidate_flow, fast_adapt_flow, ingest_flow, retrain_slow_flow
    from flows.stream import stream_flow

    tmp = tmp_path_factory.mktemp("live")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    root = make_root(tmp / "project", live_params())
    main_job = stream_flow("replay", root=str(root))
    steps = {"ingest": [ingest_flow(root=str(root))]}
    steps["fast-adapt"] = [fast_adapt_flow(root=str(root))]  # absorbs window 1
    steps["ingest"] += [ingest_flow(root=str(root)), ingest_flow(root=str(root)), ingest_flow(root=str(root))]
    steps["fast-adapt"] += [fast_adapt_flow(root=str(root)), fast_adapt_flow(root=str(root))]  # 2 and 3, then nothing
    before_consolidation = state_of(root)
    steps["consolidate"] = [consolidate_flow(root=str(root)), consolidate_flow(root=str(root))]
    after_consolidation = state_of(root)
    steps["pretrain-slow"] = [retrain_slow_flow(root=str(root)), retrain_slow_flow(root=str(root))]
    yield {"root": root, "main_job": main_job, "steps": steps, "client": MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}"),
           "before_consolidation": before_consolidation, "after_consolidation": after_consolidation}
    mp.undo()


def _runs(client: MlflowClient, phase: str):
    experiment = client.get_experiment_by_name(f"{STREAM}-live")
    return client.search_runs([experiment.experiment_id], f"tags.phase = '{phase}'", order_by=["attributes.start_time ASC"])


def test_ingest_lets_one_window_arrive_per_run_then_nothing(live):
    assert [s["ingested"] for s in live["steps"]["ingest"]] == [1, 2, 3, None]
    assert state_of(live["root"]).num_arrived == 4


def test_live_loop_reproduces_the_main_job_window_by_window(live):
    """Absorbed in two runs from checkpoints, the live replay scores exactly what the main
    job's replay scored after each window (same seed: the same numbers)."""
    matrix = json.loads((live["root"] / "results" / "methods" / "replay" / "seed0" / "metrics.json").read_text())["matrix"]
    client = live["client"]
    runs = _runs(client, "fast-adapt")
    assert len(runs) == 2  # the run with nothing to absorb opens no tracking run
    for k in (1, 2, 3):
        for j in range(k + 1):
            history = [m for r in runs for m in client.get_metric_history(r.info.run_id, f"acc_w{j}") if m.step == k]
            assert len(history) == 1, f"acc_w{j} at window {k} logged {len(history)} times"
            assert history[0].value == pytest.approx(matrix[k][j], abs=1e-9)


def test_second_run_on_the_same_data_is_a_no_op(live):
    steps = live["steps"]
    assert steps["fast-adapt"][-1] == {"absorbed": [], "drift": None}
    assert steps["consolidate"][1] == {"decision": None}
    assert steps["pretrain-slow"][1] == {"decision": None}
    assert len(_runs(live["client"], "consolidate")) == 1


def test_challenger_is_registered_past_the_gate(live):
    state = live["before_consolidation"]
    assert state.challenger is not None and state.challenger.window == 3
    version = live["client"].get_model_version_by_alias(LIVE_MODEL, "challenger")
    assert str(version.version) == state.challenger.version
    assert version.tags["window"] == "3"


def test_consolidation_promotes_within_the_tolerance(live):
    before, after = live["before_consolidation"], live["after_consolidation"]
    decision = live["steps"]["consolidate"][0]
    assert decision["decision"] == "promoted", decision["reason"]
    assert after.champion.version != before.champion.version and after.consolidated == 3
    run = _runs(live["client"], "consolidate")[0]
    assert run.data.tags["decision"] == "promoted"
    assert run.data.metrics["candidate_acc_seen"] >= run.data.metrics["champion_acc_seen"] - 0.02


def test_weekly_retraining_on_everything_so_far_starts_the_fast_state_over(live):
    decision = live["steps"]["pretrain-slow"][0]
    state = state_of(live["root"])
    client = live["client"]
    champion = client.get_model_version_by_alias(LIVE_MODEL, "champion")
    # Trained jointly on every window, the fresh model beats replay's fast state by far here.
    assert decision["decision"] == "promoted", decision["reason"]
    assert state.fresh_from == 3 and state.retrained == 3 and str(champion.version) == state.champion.version
    assert champion.tags["origin"] == "pretrain-slow"
    assert not (live["root"] / ".slowfast" / "ops" / STREAM / "fast").exists()  # grown from the old base
    assert _runs(client, "pretrain-slow")[0].data.tags["reason"] == decision["reason"]


def test_refused_consolidation_keeps_the_champion_and_says_why(prefect_api_url, tmp_path, mlflow_store, capsys):
    from flows.ops import consolidate_flow, fast_adapt_flow, ingest_flow

    root = make_root(tmp_path / "project", live_params(method="wrecked", promotion_tolerance=0.0))
    ingest_flow(root=str(root))
    fast_adapt_flow(root=str(root))
    champion_file = (root / ".slowfast" / "ops" / STREAM / "champion.pt").read_bytes()
    client = MlflowClient(mlflow_store)
    champion_before = str(client.get_model_version_by_alias(LIVE_MODEL, "champion").version)

    decision = consolidate_flow(root=str(root))

    assert decision["decision"] == "refused"
    assert "would drop from" in decision["reason"] and "the champion stays" in decision["reason"]
    assert str(client.get_model_version_by_alias(LIVE_MODEL, "champion").version) == champion_before
    assert (root / ".slowfast" / "ops" / STREAM / "champion.pt").read_bytes() == champion_file
    state = state_of(root)
    assert state.champion.version == champion_before and state.consolidated == 0
    assert state.decisions[-1].promoted is False and state.decisions[-1].reason == decision["reason"]
    run = _runs(client, "consolidate")[0]
    assert run.data.tags["decision"] == "refused" and run.data.tags["reason"] == decision["reason"]
    assert run.info.status == "FINISHED"
    assert "[consolidate] refused: accuracy over windows 0..1 would drop" in capsys.readouterr().out
    assert consolidate_flow(root=str(root)) == {"decision": None}  # decided: not asked again


def test_quality_gate_keeps_a_weak_fast_state_from_becoming_challenger(prefect_api_url, tmp_path, mlflow_store):
    from flows.ops import fast_adapt_flow, ingest_flow

    root = make_root(tmp_path / "project", live_params(challenger_min_acc=1.0))
    ingest_flow(root=str(root))
    outcome = fast_adapt_flow(root=str(root))
    assert "challenger" not in outcome and state_of(root).challenger is None
    client = MlflowClient(mlflow_store)
    run = _runs(client, "fast-adapt")[0]
    assert "below the gate 1.0" in run.data.tags["challenger_refused"]
    assert "challenger" not in client.get_registered_model(LIVE_MODEL).aliases


def test_drift_detector_starts_consolidation_early(prefect_api_url, tmp_path, mlflow_store):
    """New classes arrive: the serving model gets every row of the new window wrong, ADWIN
    fires, and fast-adapt consolidates at once (trigger: drift)."""
    from flows.ops import fast_adapt_flow, ingest_flow

    root = make_root(tmp_path / "project", live_params(drift={"detector": "adwin"}))
    ingest_flow(root=str(root))
    outcome = fast_adapt_flow(root=str(root))
    assert outcome["drift"] is not None and outcome["drift"]["window"] == 1
    assert outcome["consolidation"]["decision"] in ("promoted", "refused")
    assert state_of(root).decisions[-1].trigger == "drift"


def test_a_changed_window_after_ingest_is_refused(prefect_api_url, tmp_path, mlflow_store):
    from flows.ops import ingest_flow

    root = make_root(tmp_path / "project", live_params())
    ingest_flow(root=str(root))
    part = root / "data" / "streams" / STREAM / "split=train" / "window=0001" / "part-0.parquet"
    part.write_bytes(part.read_bytes()[:-8] + b"changed!")
    state_file = root / ".slowfast" / "ops" / STREAM / "state.json"
    before = state_file.read_bytes()
    with pytest.raises(SlowfastError, match="window 1 changed after it was ingested"):
        ingest_flow(root=str(root))
    assert state_file.read_bytes() == before


def test_live_loop_refuses_another_method_on_the_same_state(prefect_api_url, tmp_path, mlflow_store):
    from flows.ops import ingest_flow

    root = make_root(tmp_path / "project", live_params())
    ingest_flow(root=str(root))
    write_params(root, live_params(method="wrecked"))
    with pytest.raises(SlowfastError, match="runs method 'replay' seed 0, params.yaml ops asks for 'wrecked'"):
        ingest_flow(root=str(root))


@pytest.mark.parametrize(("candidate", "champion", "tolerance", "promoted"), [
    (0.70, 0.70, 0.0, True), (0.69, 0.70, 0.02, True), (0.67, 0.70, 0.02, False), (0.90, 0.50, 0.0, True),
])
def test_promotion_rule(candidate, champion, tolerance, promoted):
    assert promotion(candidate, champion, tolerance, 3)[0] is promoted


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
def test_drift_detectors_fire_on_a_jump_in_errors_and_not_on_a_steady_rate(detector):
    trigger = DriftTrigger(detector=detector)  # the defaults params.yaml ships
    rng = np.random.default_rng(0)
    steady = (rng.random(2000) < 0.1).astype(float)
    jump = (rng.random(500) < 0.9).astype(float)
    row = detect_drift(steady, jump, trigger)
    assert row is not None and row < 200
    assert detect_drift(steady[:1000], steady[1000:], trigger) is None
    assert detect_drift(steady, jump, DriftTrigger(detector="off")) is None


def test_a_new_daily_file_in_data_raw_becomes_the_next_window(prefect_api_url, tmp_path, mlflow_store):
    """`table.path` is a glob: a new day's file, once prepared (`dvc repro prepare`, which
    the ingest deployment runs), arrives as a new window; the windows already ingested stay
    byte-identical (the seeded per-window split and window 0's scaling do not move)."""
    import polars as pl

    from flows.ops import fast_adapt_flow, ingest_flow
    from flows.prepare import prepare_flow

    raw = tmp_path / "project" / "data" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def day(d: int) -> None:
        kind = rng.choice(["fraud", "ok"], 300, p=[0.3, 0.7])
        pl.DataFrame({"amount": rng.normal(size=300) + 2.0 * (kind == "fraud"), "kind": kind,
                      "at": [f"2026-11-0{d} {h % 24:02d}:00:00" for h in range(300)]}).write_csv(raw / f"events-0{d}.csv")

    for d in (1, 2, 3):
        day(d)
    params = live_params()
    params["stream"] = {"name": STREAM, "source": "table", "test_fraction": 0.25,
                        "table": {"path": "data/raw/events-*.csv", "label": "kind",
                                  "window": {"timestamp": "at", "length": "1d"}}}
    params["model"] = {"kind": "mlp", "hidden": 32}
    root = make_root(tmp_path / "project", params)
    assert [ingest_flow(root=str(root))["ingested"] for _ in range(3)] == [1, 2, None]
    day(4)
    prepare_flow(root=str(root))
    assert ingest_flow(root=str(root))["ingested"] == 3
    assert fast_adapt_flow(root=str(root))["absorbed"] == [1, 2, 3]
