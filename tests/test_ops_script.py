"""scripts/ops.sh as a user runs it: `up` (its own Prefect server, the work pool, every
deployment, a worker), `status` (per deployment: recent and next runs), `down` (the worker
and the server really stop before it says so)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks._project import copy_repository
from tests.conftest import tiny_params, write_params

pytestmark = pytest.mark.e2e
RECORD_A_RUN = """
from prefect.client.orchestration import get_client
from prefect.states import Completed
with get_client(sync_client=True) as client:
    deployment = client.read_deployment_by_name("compare-methods/compare")
    client.create_flow_run_from_deployment(deployment.id, state=Completed())
"""


def _alive_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_ops_script_up_status_down(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    copy_repository(root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".venv").symlink_to(Path(sys.executable).parents[1], target_is_directory=True)
    params = tiny_params()
    params["methods"] = {"replay": params["methods"]["replay"]}
    params["ops"] = {"method": "replay"}
    write_params(root, params)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_HOME", "MLFLOW_TRACKING"))}
    env |= {"SLOWFAST_PREFECT_PORT": str(port), "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_LOGGING_LEVEL": "INFO"}

    def ops(command: str, timeout: int = 400) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "scripts/ops.sh", command], cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)

    run_dir = root / ".slowfast" / "ops-run"
    try:
        up = ops("up")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        worker, server = (int((run_dir / f"{name}.pid").read_text()) for name in ("worker", "server"))
        assert _alive_group(worker) and _alive_group(server), (run_dir / "worker.log").read_text()[-2000:]

        # a finished run of a manual deployment, recorded on the server (no need to run it here)
        record = subprocess.run([sys.executable, "-c", RECORD_A_RUN], cwd=root, capture_output=True, text=True,
                                env=env | {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}, timeout=120)
        assert record.returncode == 0, record.stderr[-2000:]
        status = ops("status", timeout=120)
        assert status.returncode == 0, status.stderr[-2000:]
        lines = status.stdout.splitlines()
        assert max(map(len, lines)) <= 120
        assert f"worker: running (pid {worker})" in status.stdout
        cells = {row[0]: row for row in ([c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│"))}
        for name in ("ingest", "fast-adapt", "consolidate", "pretrain-slow"):  # scheduled: the next run each
            assert any(ch.isdigit() for ch in cells[name][3]), cells[name]
        assert cells["compare"][1] == "manual" and "Completed" in cells["compare"][2], cells["compare"]
        assert "live loop: not started" in status.stdout
    finally:
        down = ops("down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert f"stopped worker (pid {worker}" in down.stdout and f"stopped server (pid {server}" in down.stdout
    assert not _alive_group(worker) and not _alive_group(server)  # gone when it says so
    assert not (run_dir / "worker.pid").exists()
    time.sleep(2)
    assert not _alive_group(worker)  # and stays gone
