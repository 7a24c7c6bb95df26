"""prefect.yaml as a user runs it: `prefect deploy --all` against a real Prefect server, a
process work pool, and every deployment run through `prefect worker start`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks._project import copy_repository
from tests.conftest import STREAM, live_params, write_params

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
ORDER = ["ingest", "fast-adapt", "consolidate", "pretrain-slow", "slow-fast-loop", "compare"]
FLOW_OF = {"ingest": "ingest", "fast-adapt": "fast-adapt", "consolidate": "consolidate",
           "pretrain-slow": "pretrain-slow", "slow-fast-loop": "slow-fast-stream", "compare": "compare-methods"}


def _run(args: list[str], root: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stdout[-1500:]}\n{done.stderr[-2500:]}"
    return done


@pytest.fixture(scope="module")
def deployed(prefect_api_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("deployed")
    copy_repository(root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    params = live_params(reproduce_prepare=True)
    params["methods"] = {"replay": params["methods"]["replay"]}
    write_params(root, params)
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "SLOWFAST_ROOT": str(root),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PATH": f"{BIN}:{os.environ['PATH']}"}
    _run(["dvc", "repro", "pretrain"], root, env)
    _run([str(BIN / "prefect"), "work-pool", "create", "slowfast", "--type", "process", "--overwrite"], root, env)
    _run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], root, env)
    return root, env


def _read_deployments() -> dict:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {d.name: d for d in client.read_deployments()}


def test_prefect_yaml_deploys_every_deployment_with_its_schedule(deployed):
    deployments = _read_deployments()
    assert set(ORDER) <= set(deployments)
    declared = {d["name"]: d for d in yaml.safe_load((deployed[0] / "prefect.yaml").read_text())["deployments"]}
    for name in ORDER:
        schedules = deployments[name].schedules
        assert len(schedules) == len(declared[name].get("schedules", [])), name
        assert deployments[name].work_pool_name == "slowfast"
    assert deployments["consolidate"].schedules[0].schedule.cron == "0 2 * * *"
    assert deployments["pretrain-slow"].schedules[0].schedule.cron == "0 3 * * 0"
    assert deployments["fast-adapt"].schedules[0].schedule.interval.total_seconds() == 900
    for name in ("slow-fast-loop", "compare"):  # the live loop's flows hold the stream's slot themselves
        assert deployments[name].global_concurrency_limit.limit == 1
        assert deployments[name].concurrency_options.collision_strategy == "ENQUEUE"


def test_each_deployment_runs_through_a_process_worker(deployed):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    root, env = deployed
    finished = {}
    for name in ORDER:
        parameters = {"method": "replay"} if name == "slow-fast-loop" else None
        flow_run = run_deployment(f"{FLOW_OF[name]}/{name}", parameters=parameters, timeout=0)
        worker = _run([str(BIN / "prefect"), "worker", "start", "--pool", "slowfast", "--type", "process",
                       "--run-once"], root, env, timeout=600)
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run.id).state
        assert state is not None and state.is_completed(), f"{name}: {state}\n{worker.stdout[-2000:]}\n{worker.stderr[-2000:]}"
        finished[name] = state
    live = json.loads((root / ".slowfast" / "ops" / STREAM / "state.json").read_text())
    assert live["absorbed"] == 1 and len(live["arrived"]) == 2
    assert live["decisions"] and live["retrained"] == 1
    assert (root / "results" / "methods" / "replay" / "metrics.json").is_file()
    assert json.loads((root / "results" / "compare.json").read_text()).keys() == {"replay"}


def test_ingest_waits_out_another_dvc_process_holding_the_repository_lock(deployed, monkeypatch, capsys):
    """A file lock is a transient failure: `dvc repro prepare` is retried with backoff."""
    import threading
    import time

    import zc.lockfile

    from flows.ops import ingest_flow

    root, env = deployed
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    arrived = len(json.loads((root / ".slowfast" / "ops" / STREAM / "state.json").read_text())["arrived"])
    lock = zc.lockfile.LockFile(str(root / ".dvc" / "tmp" / "lock"))  # as a running `dvc repro` holds it
    release = threading.Timer(15.0, lock.close)  # longer than a flow takes to start on a loaded machine
    release.start()
    start = time.monotonic()
    try:
        result = ingest_flow(root=str(root))
    finally:
        release.cancel()
        lock.close()
    assert time.monotonic() - start >= 15.0
    assert result["ingested"] == arrived
    assert "[ingest] dvc is busy" in capsys.readouterr().out
