"""Safety of unattended runs, with real processes: a SIGKILL in the middle of a window,
two runs on one stream at once, and a tracking store that is down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, STREAM, live_params, make_root, tiny_params, write_params

TIMING = {"seconds", "samples_per_second", "peak_memory_mb", "seconds_per_window"}
TIMING |= {f"window/{name}" for name in TIMING}  # a window's own, beside the seed's


def flow_command(module: str, root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args, "--root", str(root)]


def flow_env(prefect_api_url: str, store: str) -> dict:
    return {**os.environ, "PREFECT_API_URL": prefect_api_url, "MLFLOW_TRACKING_URI": store}


def _history(client: MlflowClient, run_ids: list[str]) -> dict[str, list[tuple[int, float]]]:
    """Every (step, value) of every metric over the given runs, timings left out."""
    out: dict[str, list[tuple[int, float]]] = {}
    for run_id in run_ids:
        for key in client.get_run(run_id).data.metrics:
            if key not in TIMING:
                out.setdefault(key, []).extend((m.step, m.value) for m in client.get_metric_history(run_id, key))
    return {k: sorted(v) for k, v in out.items()}


def test_sigkill_mid_window_resumes_from_the_last_finished_window(prefect_api_url, tmp_path, monkeypatch):
    """A finished run, then a second one killed in seed 1's second window: the rerun keeps
    seed 0 as the killed run left it, resumes seed 1 at window 2, trains seed 2 (not reusing
    the first run's), and ends with the numbers of a run that was never interrupted."""
    params = tiny_params(seeds=[0, 1, 2])
    params["methods"] = {"replay": {"epochs": 60, "lr": 0.005, "buffer_size": 300}}  # a window takes seconds
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'clean.db'}")
    killed_root = make_root(tmp_path / "killed", params)
    clean_root = tmp_path / "clean"
    shutil.copytree(killed_root, clean_root)
    killed_store = f"sqlite:///{tmp_path / 'killed.db'}"
    env = flow_env(prefect_api_url, killed_store)
    from flows.stream import stream_flow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'earlier.db'}")
    stream_flow("replay", root=str(killed_root))  # an earlier run that finished
    shutil.rmtree(killed_root / "results" / "methods" / "replay")  # results removed: train again
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'clean.db'}")

    process = subprocess.Popen(flow_command("flows.stream", killed_root, "--method", "replay"), cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:  # window 1 finished and logged: window 2 is training now
        if "[replay seed 1] window 1/3" in line:
            break
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    state = killed_root / ".slowfast" / "state" / STREAM / "replay" / "seed1"
    assert (state / "window-0001.pt").is_file()
    assert not (state / "window-0002.pt").exists(), "the kill came after window 2: not mid-window"

    resumed = subprocess.run(flow_command("flows.stream", killed_root, "--method", "replay"), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[replay seed 0] finished by the interrupted run" in resumed.stdout
    assert "[replay seed 1] resuming at window 2" in resumed.stdout
    assert "[replay seed 2] window 1/3" in resumed.stdout  # the earlier run's seed 2 is not this run's
    assert "seed 0] window" not in resumed.stdout and "seed 1] window 1/3" not in resumed.stdout

    stream_flow("replay", root=str(clean_root))  # the same work, never interrupted

    def summary(root: Path, *parts: str) -> dict:
        data = json.loads(root.joinpath("results", "methods", "replay", *parts, "metrics.json").read_text())
        skip = TIMING | {"mlflow_run_id", "mlflow_run_ids", "model_version", "mlflow_calls", "mlflow_seconds",
                         "mlflow_model_seconds"}
        return {k: v for k, v in data.items() if k not in skip and not k.startswith(("std", "mean"))} | {
            k: {m: x for m, x in data[k].items() if m not in TIMING} for k in ("mean", "std") if k in data}

    for parts in [("seed0",), ("seed1",), ("seed2",), ()]:
        assert summary(killed_root, *parts) == summary(clean_root, *parts), parts
    for name in ("accuracy_matrix.csv", "continual.csv"):
        for seed in ("seed0", "seed1", "seed2"):
            base = Path("results", "methods", "replay", seed, name)
            assert (killed_root / base).read_text() == (clean_root / base).read_text()

    killed, clean = MlflowClient(killed_store), MlflowClient(f"sqlite:///{tmp_path / 'clean.db'}")
    runs = killed.search_runs([killed.get_experiment_by_name(STREAM).experiment_id], "tags.phase = 'stream'",
                              order_by=["attributes.start_time ASC"])
    assert [(r.info.run_name, r.info.status) for r in runs] == [
        ("replay-seed0", "FINISHED"), ("replay-seed1", "FAILED"), ("replay-seed1", "FINISHED"),
        ("replay-seed2", "FINISHED")]
    runs = runs[1:3]
    assert runs[0].data.tags["interrupted"] == "true"
    assert runs[1].data.tags["resumed_from"] == runs[0].info.run_id and runs[1].data.tags["resumed_at_window"] == "2"
    clean_run = clean.search_runs([clean.get_experiment_by_name(STREAM).experiment_id],
                                  "tags.phase = 'stream' and tags.seed = '1'")[0]
    union = _history(killed, [r.info.run_id for r in runs])
    for key, points in union.items():
        steps = [s for s, _ in points]
        assert len(steps) == len(set(steps)), f"{key} logged twice at a step"
    assert union == _history(clean, [clean_run.info.run_id])


def test_sigkill_during_fast_adapt_resumes_the_live_loop(prefect_api_url, tmp_path, monkeypatch):
    """The live loop killed mid-window: the next fast-adapt marks the killed run FAILED,
    absorbs only what is left and logs every window once. The rerun calls the task itself:
    the killed process's hold on the stream's slot lasts until its lease expires (at least
    60 s, Prefect's floor), which the busy-stream test below covers."""
    from flows.ops import ingest_flow
    from tasks.ops import fast_adapt

    params = live_params()
    params["methods"]["replay"] = {"epochs": 300, "lr": 0.005, "buffer_size": 300}  # a window takes seconds
    # A stream of its own: the test server runs no lease repossessor, so the killed run's
    # slot stays taken for the rest of the session.
    stream = params["stream"]["name"] = "tiny-killed"
    killed_store, clean_store = f"sqlite:///{tmp_path / 'killed.db'}", f"sqlite:///{tmp_path / 'clean.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", killed_store)
    killed_root = make_root(tmp_path / "killed", params)
    for _ in range(3):
        ingest_flow(root=str(killed_root))
    clean_root = tmp_path / "clean"
    shutil.copytree(killed_root, clean_root)

    process = subprocess.Popen(flow_command("flows.ops", killed_root, "fast-adapt"), cwd=REPO,
                               env=flow_env(prefect_api_url, killed_store), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith("[fast-adapt] window 1:"):
            break
    time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    state = json.loads((killed_root / ".slowfast" / "ops" / stream / "state.json").read_text())
    assert state["absorbed"] == 1 and state["active_run"] is not None, "the kill did not land in window 2"

    assert fast_adapt(root=str(killed_root))["absorbed"] == [2, 3]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", clean_store)
    fast_adapt(root=str(clean_root))  # the same work, never interrupted

    killed, clean = MlflowClient(killed_store), MlflowClient(clean_store)

    def runs(client: MlflowClient):
        experiment = client.get_experiment_by_name(f"{stream}-live").experiment_id  # the live loop's own
        return client.search_runs([experiment], "tags.phase = 'fast-adapt'", order_by=["attributes.start_time ASC"])

    interrupted, resumed = runs(killed)
    assert (interrupted.info.status, interrupted.data.tags["interrupted"]) == ("FAILED", "true")
    assert resumed.info.status == "FINISHED" and resumed.data.tags["resumed_from"] == interrupted.info.run_id
    union = _history(killed, [interrupted.info.run_id, resumed.info.run_id])
    assert union == _history(clean, [runs(clean)[0].info.run_id])
    assert [step for step, _ in union["acc_seen"]] == [1, 2, 3]


@pytest.fixture
def live_root(prefect_api_url, tmp_path, monkeypatch):
    """A live root with every window arrived and nothing absorbed yet."""
    from flows.ops import ingest_flow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    root = make_root(tmp_path / "project", live_params(on_busy="wait"))
    for _ in range(3):
        ingest_flow(root=str(root))
    return root, store


def _absorbed(root: Path) -> int:
    return json.loads((root / ".slowfast" / "ops" / STREAM / "state.json").read_text())["absorbed"]


def _fast_adapt_running(since: float) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, \
        FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["fast-adapt"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
        )
    return any(r.start_time is not None and r.start_time.timestamp() >= since - 1 for r in runs)


def test_a_run_on_a_busy_stream_waits_or_skips(prefect_api_url, live_root):
    from adapters.prefect_lock import stream_lock

    root, store = live_root
    env = flow_env(prefect_api_url, store)
    with stream_lock(STREAM, "wait", 60) as held:  # as a running fast-adapt would
        assert held
        write_params(root, live_params(on_busy="skip"))
        skipped = subprocess.run(flow_command("flows.ops", root, "fast-adapt"),
                                 cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert skipped.returncode == 0, skipped.stderr[-2000:]
        assert f"[fast-adapt] skipped: another run holds stream {STREAM}" in skipped.stdout
        assert _absorbed(root) == 0

        write_params(root, live_params(on_busy="wait"))
        started = time.time()
        waiting = subprocess.Popen(flow_command("flows.ops", root, "fast-adapt"), cwd=REPO,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not _fast_adapt_running(started):
            assert waiting.poll() is None and time.monotonic() < deadline, "the waiting run never started"
            time.sleep(0.5)
        time.sleep(3)
        assert waiting.poll() is None and _absorbed(root) == 0  # blocked on the slot, nothing touched
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err[-2000:]
    assert "[fast-adapt] window 3" in out and _absorbed(root) == 3


def test_two_concurrent_fast_adapt_runs_absorb_each_window_once(prefect_api_url, live_root):
    root, store = live_root
    env = flow_env(prefect_api_url, store)
    command = flow_command("flows.ops", root, "fast-adapt")
    processes = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [e[-1500:] for _, e in outputs]
    stdout = "".join(o for o, _ in outputs)
    assert stdout.count("[fast-adapt] window 1:") == 1 and stdout.count("[fast-adapt] nothing to absorb") == 1
    assert _absorbed(root) == 3
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name(f"{STREAM}-live").experiment_id], "tags.phase = 'fast-adapt'")
    assert len(runs) == 1
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "acc_seen")] == [1, 2, 3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tracking_store_down_ends_with_one_line_and_keeps_the_champion(prefect_api_url, live_root):
    from flows.ops import fast_adapt_flow

    root, _ = live_root
    fast_adapt_flow(root=str(root))
    params = live_params()
    params["tracking"] = {**params["tracking"], "retry_attempts": 3, "retry_backoff_seconds": 0.2}
    write_params(root, params)
    live = root / ".slowfast" / "ops" / STREAM
    before = {name: (live / name).read_bytes() for name in ("state.json", "champion.pt")}
    dead = f"http://127.0.0.1:{_free_port()}"
    done = subprocess.run(flow_command("flows.ops", root, "consolidate"), cwd=REPO,
                          env=flow_env(prefect_api_url, dead), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: MLflow store {dead}: ") and "failed 3 times" in lines[-1]
    assert len(lines) == 3 and all("retry" in line for line in lines[:-1])  # the two retries, then one error line
    assert {name: (live / name).read_bytes() for name in before} == before


def test_a_store_that_comes_back_is_retried_until_it_answers(tmp_path, monkeypatch):
    from adapters import mlflow_store as tracking

    port = _free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setitem(tracking.RETRY, "attempts", 10)
    monkeypatch.setitem(tracking.RETRY, "backoff_seconds", 0.5)
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts-destination", str(tmp_path / "a")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # starts in the background: the first calls find nothing listening
    try:
        retries = tracking.CALLS["retries"]
        run_id = tracking.start_run("comeback", "after-an-outage")
        assert tracking.CALLS["retries"] > retries
        assert MlflowClient(f"http://127.0.0.1:{port}").get_run(run_id).info.run_name == "after-an-outage"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_units_starting_together_in_a_fresh_experiment_all_record_the_stream_they_read(tiny_root, tmp_path, monkeypatch):
    """MLflow's store looks a dataset up, then inserts it: without care, all but one of the
    units that start at once through the stage's tracking server fail on that insert (seen
    here 7 times in 10 rounds of 4)."""
    import threading

    from adapters import mlflow_store as tracking
    from adapters.servers import shared_tracking
    from components.config import load_params
    from components.data.stream_io import read_manifest

    stream_dir = load_params(tiny_root / "params.yaml").stream_dir(tiny_root)
    manifest = read_manifest(stream_dir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    failures: list[str] = []
    with shared_tracking(tmp_path):
        for round_ in range(6):
            runs = [tracking.start_run(f"fresh-{round_}", f"unit-{i}") for i in range(4)]
            together = threading.Barrier(len(runs))

            def unit(run_id: str) -> None:
                together.wait()
                try:
                    tracking.log_stream_input(run_id, manifest, stream_dir, "stream")
                except Exception as error:  # noqa: BLE001 - every failure is the finding
                    failures.append(str(error).splitlines()[0])

            threads = [threading.Thread(target=unit, args=(r,)) for r in runs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            client = tracking.client()
            assert all(len(client.get_run(r).inputs.dataset_inputs) == 1 for r in runs)
    assert failures == []


def test_a_truncated_slow_model_is_one_line_and_leaves_no_run_running(prefect_api_url, tmp_path, monkeypatch):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    params = tiny_params()
    params["methods"] = {"finetune": params["methods"]["finetune"]}
    root = make_root(tmp_path / "root", params)
    model = root / "models" / "slow" / "model.pt"
    model.write_bytes(model.read_bytes()[:300])
    result = subprocess.run(flow_command("flows.stream", root), cwd=REPO, env=flow_env(prefect_api_url, store),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "models/slow/model.pt: not a readable checkpoint" in lines[0], result.stderr[-2000:]
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []


def test_a_temporary_prefect_server_that_does_not_start_is_one_line(tmp_path):
    write_params(tmp_path, tiny_params())
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1", "PREFECT_HOME": str(tmp_path / "prefect")}
    result = subprocess.run(flow_command("flows.prepare", tmp_path), cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Prefect's temporary server did not answer within 1 s" in lines[0], result.stderr[-3000:]


def test_a_store_that_refuses_writes_is_one_line_and_keeps_the_checkpoints(prefect_api_url, tmp_path, monkeypatch):
    """`chattr +i mlflow.db`: the stage ends with one line saying why, without a traceback,
    and the earlier run's checkpoints and progress record are still there."""
    store_path = tmp_path / "mlflow.db"
    store = f"sqlite:///{store_path}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    params = tiny_params()
    params["methods"] = {"finetune": params["methods"]["finetune"]}
    root = make_root(tmp_path / "root", params)
    env = flow_env(prefect_api_url, store)
    assert subprocess.run(flow_command("flows.stream", root), cwd=REPO, env=env, capture_output=True).returncode == 0
    shutil.rmtree(root / "results" / "methods" / "finetune")  # ask for a retrain
    state = root / ".slowfast" / "state" / STREAM / "finetune" / "seed0"
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    if subprocess.run(["chattr", "+i", str(store_path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    try:
        result = subprocess.run(flow_command("flows.stream", root), cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=300)
    finally:
        subprocess.run(["chattr", "-i", str(store_path)])
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "create_run refused: (sqlite3.OperationalError) attempt to write a readonly database" in lines[0]
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before
