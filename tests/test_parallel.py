"""Units on real Dask clusters with real servers: the same numbers as one process, whatever
the cluster; one tracking server for many writers (sqlite behind a loopback server, or
PostgreSQL); a worker killed mid-unit; a unit that fails on a user error."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, STREAM, make_root, tiny_params, write_params

METHODS = ("replay", "lora")


@pytest.fixture(scope="module")
def prepared(prefect_api_url, tmp_path_factory) -> Path:
    """A tiny project, prepared and pretrained: 2 entries x 2 seeds = 4 units of a second or
    two (long enough for the SIGKILL test to find two units mid-stream)."""
    base = tmp_path_factory.mktemp("parallel")
    params = tiny_params(seeds=[0, 1])
    params["methods"] = {m: {**params["methods"][m], "epochs": 20} for m in METHODS}
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{base / 'prep.db'}")
    root = make_root(base / "root", params)
    mp.undo()
    return root


def _copy(prepared: Path, where: Path, **parallel) -> Path:
    shutil.copytree(prepared, where, ignore=shutil.ignore_patterns(".slowfast", "results"))
    params = yaml.safe_load((where / "params.yaml").read_text())
    params["parallel"] = parallel
    write_params(where, params)
    return where


def stage(root: Path, prefect_api_url: str, tracking_uri: str | None = None, wait: bool = True, **env):
    """`python -m flows.stream` as DVC runs it; the store is a sqlite file in `root` unless given."""
    full = {**os.environ, "PREFECT_API_URL": prefect_api_url,
            "MLFLOW_TRACKING_URI": tracking_uri or f"sqlite:///{root / 'mlflow.db'}", **env}
    command = [sys.executable, "-m", "flows.stream", "--root", str(root)]
    if not wait:
        return subprocess.Popen(command, cwd=REPO, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=REPO, env=full, capture_output=True, text=True, timeout=600)


def numbers(root: Path) -> dict[str, str]:
    """Every file the inputs determine (DVC's view of the stage), by path."""
    files = sorted((root / "results" / "methods").rglob("*"))
    return {str(p.relative_to(root)): p.read_text() for p in files if p.suffix in (".json", ".csv")}


def seed_records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / ".slowfast" / "runs" / STREAM).glob("*/seed*.json"))]


@pytest.fixture(scope="module")
def reference(prepared, prefect_api_url, tmp_path_factory) -> dict[str, str]:
    """Every unit one after another in the stage's own process."""
    root = _copy(prepared, tmp_path_factory.mktemp("ref") / "root", workers=0)
    done = stage(root, prefect_api_url)
    assert done.returncode == 0, done.stderr[-3000:]
    result = numbers(root)
    assert len([k for k in result if k.endswith("seed0/metrics.json")]) == len(METHODS)
    return result


def test_a_local_cluster_gives_the_numbers_of_one_process_through_one_tracking_server(
    reference, prepared, prefect_api_url, tmp_path
):
    root = _copy(prepared, tmp_path / "root", workers=2)
    done = stage(root, prefect_api_url)  # a sqlite store: the stage serves it from one loopback server
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "Traceback" not in out and "WARNING" not in out and "database is locked" not in out
    assert numbers(root) == reference
    records = seed_records(root)
    assert len(records) == 4 and all(r["mlflow_retries"] == 0 for r in records)
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(STREAM).experiment_id], "tags.phase = 'stream'")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert (root / ".slowfast" / "mlflow-server.log").is_file()  # the server it started, now stopped


def _worker_pids(address: str, workers: int = 0) -> dict[str, int]:
    from distributed import Client

    with Client(address, timeout=30) as client:
        if workers:
            client.wait_for_workers(workers, timeout=120)
        return client.run(os.getpid)


def _units_mid_stream(root: Path) -> int:
    """Units that have finished a window and not yet their last."""
    from components.progress import load_progress

    count = 0
    for path in (root / ".slowfast" / "state" / STREAM).glob("*/seed*/progress.json"):
        try:
            progress = load_progress(path.parent)
        except (OSError, ValueError, TypeError):
            continue  # replaced while read
        count += progress is not None and 0 < len(progress.windows) < 3 and not progress.complete
    return count


def _stage_mid_stream(root: Path, prefect_api_url: str, units: int) -> subprocess.Popen:
    """The stage started, once `units` units are between their first and last window."""
    running = stage(root, prefect_api_url, wait=False)
    deadline = time.monotonic() + 300
    while _units_mid_stream(root) < units and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.poll() is None, running.communicate()
    return running


def test_a_worker_process_killed_mid_unit_is_resumed_on_a_scheduler_and_worker_processes_cluster(
    reference, prepared, prefect_api_url, tmp_path
):
    from adapters.dask_cluster import process_cluster

    env = {"PREFECT_API_URL": prefect_api_url}
    with process_cluster(2, tmp_path / "logs", env=env) as address:
        from distributed import Client

        with Client(address, timeout=30) as client:  # the scheduler unpickles units: their modules are loaded at its start
            assert client.run_on_scheduler(lambda: {"tasks.stream", "tasks.tune", "tasks.text"} <= set(sys.modules))
        root = _copy(prepared, tmp_path / "root", scheduler=address)
        running = _stage_mid_stream(root, prefect_api_url, units=2)
        victim = next(iter(_worker_pids(address).values()))
        os.kill(victim, signal.SIGKILL)  # the worker, not its nanny: Dask reschedules its unit
        out, err = running.communicate(timeout=600)
    assert running.returncode == 0, err[-3000:]
    assert numbers(root) == reference
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(STREAM).experiment_id], "tags.phase = 'stream'")
    resumed = [r for r in runs if "resumed_from" in r.data.tags]
    assert resumed, "no unit resumed: the kill did not land mid-unit"
    killed = {r.info.run_id: r for r in runs}[resumed[0].data.tags["resumed_from"]]
    assert killed.info.status == "FAILED" and killed.data.tags["interrupted"] == "true"
    assert "resuming at window" in out


def test_a_stage_whose_scheduler_dies_mid_stream_ends_in_one_line(prepared, prefect_api_url, tmp_path):
    """The scheduler killed (out of memory, its machine gone): the stage used to end with Dask's
    tracebacks; now one line, exit code 2, and the finished windows stay for the rerun."""
    from distributed import Client

    from adapters.dask_cluster import process_cluster

    with process_cluster(2, tmp_path / "logs", env={"PREFECT_API_URL": prefect_api_url}) as address:
        with Client(address, timeout=30) as client:
            scheduler = client.run_on_scheduler(os.getpid)
        root = _copy(prepared, tmp_path / "root", scheduler=address)
        running = _stage_mid_stream(root, prefect_api_url, units=1)
        os.kill(scheduler, signal.SIGKILL)
        out, err = running.communicate(timeout=300)
    assert running.returncode == 2, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the units' Dask cluster went away"), err[-3000:]
    from components.progress import load_progress

    kept = [load_progress(p.parent) for p in (root / ".slowfast" / "state" / STREAM).glob("*/seed*/progress.json")]
    assert any(p is not None and p.windows for p in kept)  # finished windows stay for the rerun


def test_under_run_sh_a_stage_runs_its_units_on_the_pipelines_warm_cluster_which_ends_with_run_sh(
    reference, prepared, prefect_api_url, tmp_path, monkeypatch
):
    """./run.sh starts the cluster once (adapters/pipeline_cluster.py); the stage submits to
    it instead of starting its own, and it stops by itself when ./run.sh is killed."""
    from distributed import Client

    from adapters import pipeline_cluster, servers

    def dask_clocks() -> tuple[str, str]:  # defined here: sent by value, not imported by the workers
        import dask

        return dask.config.get("distributed.admin.tick.interval"), dask.config.get("distributed.admin.system-monitor.interval")

    root = _copy(prepared, tmp_path / "root", workers=2)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    run_sh = subprocess.Popen(["sleep", "900"])  # stands in for ./run.sh, killed with SIGKILL below
    state = tmp_path / "dask-cluster.json"
    state.write_text('{"state": "starting"}')
    with servers.shared_tracking(tmp_path / "logs") as uri, (tmp_path / "dask-cluster.log").open("w") as log:
        cluster = subprocess.Popen([sys.executable, "-m", "adapters.pipeline_cluster_server", str(state), str(servers.free_port()),
                                    str(run_sh.pid), str(root / "params.yaml")], cwd=REPO, stdout=log, stderr=log)
        try:
            monkeypatch.setenv(pipeline_cluster.ENV, str(state))
            started = pipeline_cluster.started_state(state)
            assert started["state"] == "ready", (tmp_path / "dask-cluster.log").read_text()[-3000:]
            address = started["address"]
            before = _worker_pids(address, workers=2)  # "ready" comes as the scheduler listens, the workers after
            done = stage(root, prefect_api_url, tracking_uri=uri, **{pipeline_cluster.ENV: str(state)})
            assert done.returncode == 0, done.stderr[-3000:]
            assert "of its own" not in done.stdout + done.stderr
            assert numbers(root) == reference
            with Client(address, timeout=30) as client:
                ran = client.run_on_scheduler(
                    lambda dask_scheduler: dask_scheduler.task_prefixes["run_unit"].state_counts["memory"])
                clocks = [*client.run(dask_clocks).values(), client.run_on_scheduler(dask_clocks)]
            assert ran == 4  # every unit finished on this cluster
            # slowfast's Dask settings reached every process (Dask's own 20 ms tick took 4 % of a sweep)
            assert clocks == [("200ms", "2s")] * 3, clocks
            assert _worker_pids(address) == before  # the same warm workers, no new ones
        finally:
            run_sh.kill()
            run_sh.wait()
        cluster.wait(timeout=60)  # by itself: ./run.sh is gone
    assert cluster.returncode == 0, (tmp_path / "dask-cluster.log").read_text()[-3000:]


def test_a_unit_failing_on_a_user_error_ends_the_stage_in_one_line_and_the_other_results_stay(
    prepared, prefect_api_url, tmp_path
):
    root = _copy(prepared, tmp_path / "root", workers=2)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["methods"] = {"replay": params["methods"]["replay"],
                         "wronglayer": {"method": "lora", "epochs": 1, "target_modules": ["nope"]}}
    write_params(root, params)
    done = stage(root, prefect_api_url)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: wronglayer seed ") and "'nope'" in lines[0], lines
    assert json.loads((root / "results" / "methods" / "replay" / "metrics.json").read_text())["method"] == "replay"
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(STREAM).experiment_id], "tags.method = 'wronglayer'")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FAILED"}


def test_an_mlflow_server_on_postgresql_takes_every_worker(reference, prepared, prefect_api_url, postgres, tmp_path):
    """The many-machine set-up on one machine: MLflow's server on PostgreSQL, artifacts on a
    shared directory, units on a 1-worker local cluster (several workers: the tests above)."""
    from adapters.servers import mlflow_server_command, wait_for, free_port

    port = free_port()
    artifacts = (tmp_path / "artifacts").resolve().as_uri()
    with (tmp_path / "mlflow.log").open("w") as log:
        server = subprocess.Popen(mlflow_server_command(postgres, port, artifacts), stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", 120, server, tmp_path / "mlflow.log")
        root = _copy(prepared, tmp_path / "root", workers=1)
        done = stage(root, prefect_api_url, tracking_uri=f"http://127.0.0.1:{port}")
        assert done.returncode == 0, done.stderr[-3000:]
        assert numbers(root) == reference
        assert not (root / "mlflow.db").exists()  # everything went to PostgreSQL
        client = MlflowClient(f"http://127.0.0.1:{port}")
        runs = client.search_runs([client.get_experiment_by_name(STREAM).experiment_id], "tags.phase = 'stream'")
        assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
        assert any((tmp_path / "artifacts").rglob("accuracy_matrix.png"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _stack_imported_by() -> tuple[int, int]:
    import adapters.dask_worker

    return adapters.dask_worker.IMPORTED_BY, os.getpid()


def _dotted(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: dask.config.set replaces a whole subtree given as a dict.
    A subtree whose keys hold dots (logging's logger names) is set whole: dotted, they would
    read as nesting."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and not any("." in k for k in value):
            out |= _dotted(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_local_workers_fork_from_a_server_that_imported_their_stack_once(monkeypatch):
    """torch, Prefect, MLflow, peft and components/ are imported once, by the fork server,
    not again by every worker (seconds each): Dask's own fork-server preload list must not
    replace slowfast's."""
    import dask
    import torch

    from adapters import dask_cluster
    from components.config import ParallelParams

    # the stage's Dask settings (its flows package points DASK_CONFIG at them before dask is
    # imported; this test process imported dask first)
    settings = dask.config.collect([str(dask_cluster.DASK_CONFIG)], env={})
    for name in settings["distributed"]["nanny"]["pre-spawn-environ"]:
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored afterwards: the nannies set them here
    with dask.config.set(_dotted(settings)):
        runner = dask_cluster.task_runner(ParallelParams(workers=2), torch.device("cpu"), {})
        with runner:
            client = runner.client
            client.wait_for_workers(2, timeout=120)
            imported = client.run(_stack_imported_by)
    assert len(imported) == 2
    assert all(by != worker for by, worker in imported.values()), imported
    assert len({by for by, _ in imported.values()}) == 1  # one fork server for both


@pytest.mark.parametrize(("prefect_api", "parallel"), [
    ("", {"workers": 2}),  # the stage starts a temporary Prefect server first: workers need its URL
    ("http://127.0.0.1:1/api", {"workers": 0}),  # every unit in the stage's own process
    ("http://127.0.0.1:1/api", {"workers": 2, "scheduler": "tcp://127.0.0.1:8786"}),  # someone else's workers
])
def test_the_fork_server_starts_early_only_for_a_local_cluster_that_knows_its_prefect_api(
    prefect_api, parallel, tmp_path, monkeypatch
):
    import multiprocessing.forkserver

    from adapters.fork_server import start_early

    params = tiny_params()
    params["parallel"] = parallel
    write_params(tmp_path, params)
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    before = multiprocessing.forkserver._forkserver._forkserver_pid
    assert start_early(["--root", str(tmp_path)]) is False
    assert multiprocessing.forkserver._forkserver._forkserver_pid == before


def test_a_bad_params_file_leaves_the_fork_server_to_the_stage(tmp_path, monkeypatch):
    from adapters.fork_server import start_early

    (tmp_path / "params.yaml").write_text("parallel: {workers: -3}\n")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    assert start_early(["--root", str(tmp_path)]) is False  # the stage then says what is wrong, in one line


@pytest.mark.parametrize("argv, root, params", [
    ([], None, "params.yaml"),
    (["--root", "/r", "--params", "p.yaml"], "/r", "p.yaml"),
    (["--params=p.yaml", "--root=/r", "--other", "x"], "/r", "p.yaml"),  # the stage's own options are left to it
])
def test_the_early_fork_server_reads_the_params_file_the_stage_will(argv, root, params):
    from adapters.fork_server import stage_paths

    paths = stage_paths(argv)
    assert (paths.root, paths.params) == (root, params)


def test_a_stage_with_no_units_to_run_starts_no_fork_server(tmp_path, monkeypatch):
    """`text.methods: {}` or `tune.methods: []`: the server's imports would only take the
    second core from the stage's own."""
    import multiprocessing.forkserver

    from adapters.fork_server import start_early

    params = tiny_params()
    params["parallel"] = {"workers": 2}
    write_params(tmp_path, params)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    before = multiprocessing.forkserver._forkserver._forkserver_pid
    assert start_early(["--root", str(tmp_path)], lambda p: bool(p.text.methods)) is False
    assert multiprocessing.forkserver._forkserver._forkserver_pid == before
