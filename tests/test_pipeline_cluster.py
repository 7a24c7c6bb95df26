"""How a stage finds ./run.sh's Dask cluster (adapters/pipeline_cluster.py) from its state
file: used when its shape is the stage's own, waited for while it starts, an error when it
failed (never hidden behind a cluster of the stage's own). The cluster itself, running a
stage's units, is tested in tests/test_parallel.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from adapters import pipeline_cluster
from adapters.pipeline_cluster import PipelineClusterFailed, address_for, shape

WANTED = shape(2, 1, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "OMP_NUM_THREADS": "1"})


@pytest.fixture
def state_file(tmp_path, monkeypatch):
    path = tmp_path / "dask-cluster.json"
    monkeypatch.setenv(pipeline_cluster.ENV, str(path))
    return path


def _write(path, **state) -> None:
    path.write_text(json.dumps(state))


def test_outside_run_sh_there_is_no_pipeline_cluster(monkeypatch):
    monkeypatch.delenv(pipeline_cluster.ENV, raising=False)
    assert address_for(WANTED) is None


def test_a_ready_cluster_of_the_stages_shape_is_used(state_file):
    _write(state_file, state="ready", address="tcp://127.0.0.1:8786", pid=1, shape=WANTED)
    assert address_for(WANTED) == "tcp://127.0.0.1:8786"


def test_a_cluster_of_another_shape_is_left_and_the_stage_says_what_differs(state_file):
    _write(state_file, state="ready", address="tcp://127.0.0.1:8786", pid=1, shape=shape(1, 1, WANTED["env"]))
    said = []
    assert address_for(WANTED, say=lambda line, **_: said.append(line)) is None
    assert len(said) == 1 and "workers" in said[0] and "env" not in said[0]


def test_params_that_turn_the_cluster_off_leave_the_stage_to_its_own_ways(state_file):
    _write(state_file, state="off", why="params.yaml parallel: names no local cluster")
    assert address_for(WANTED) is None


def test_a_cluster_that_failed_to_start_fails_the_stage_in_one_line_naming_its_log(state_file):
    _write(state_file, state="failed", error="OSError: [Errno 98] address already in use")
    with pytest.raises(PipelineClusterFailed, match=r"did not start: OSError.*see .*dask-cluster\.log$"):
        address_for(WANTED)


def test_a_cluster_whose_process_died_while_starting_is_an_error_not_a_wait(state_file):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write(state_file, state="starting", pid=gone.pid)
    began = time.monotonic()
    with pytest.raises(PipelineClusterFailed, match="ended while starting"):
        address_for(WANTED)
    assert time.monotonic() - began < 5


def test_a_stage_waits_for_a_cluster_still_starting(state_file):
    _write(state_file, state="starting")  # as ./run.sh writes it, before the process adds its pid
    later = threading.Timer(0.5, _write, [state_file], dict(state="ready", address="tcp://127.0.0.1:1", pid=1, shape=WANTED))
    later.start()
    assert address_for(WANTED) == "tcp://127.0.0.1:1"
