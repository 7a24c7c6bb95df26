"""The tune stage: search spaces and their overrides, the tuning/evaluation disjointness
check, seeded studies that choose the same configuration twice, and a SIGKILLed stage that
resumes its studies without repeating finished trials. (The whole tune -> evaluate ->
compare path through `dvc repro` is in tests/test_e2e.py.)"""

from __future__ import annotations

import contextlib

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from components.config import parse_params
from components.errors import ParamsError
from components.tuning import search_space, tuning_stream
from tests.conftest import REPO, tiny_params, write_params

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

TUNING_STREAM = {"seed": 7, "pretrain_classes": [6, 7, 8, 9], "window_classes": [[0, 1], [2, 3], [4, 5]]}


def _params(**tune) -> dict:
    params = tiny_params()
    params["methods"] = {"finetune": params["methods"]["finetune"], "lora": {"epochs": 1}, "ilora": {"epochs": 1}}
    params["tune"] = {"methods": ["lora"], "trials": 4, "startup_trials": 2, "stream": TUNING_STREAM, **tune}
    return params


def test_a_method_declares_its_space_and_params_narrow_override_or_drop_knobs():
    default = search_space(parse_params(_params()), "lora")
    assert default["lr"].log and default["lr"].low == 1e-4 and default["rank"].choices == [2, 4, 8, 16]
    narrowed = search_space(parse_params(_params(space={"lora": {"lr": {"low": 0.001, "high": 0.01, "log": True},
                                                                 "rank": {"choices": [4]}, "alpha": {}}})), "lora")
    assert (narrowed["lr"].low, narrowed["lr"].high, narrowed["rank"].choices) == (0.001, 0.01, [4])
    assert "alpha" not in narrowed


@pytest.mark.parametrize("space, expected", [
    ({"lora": {"nope": {"low": 1, "high": 2}}}, "tune.space.lora.nope: method 'lora' has no knob 'nope'"),
    ({"lora": {"lr": {"low": 0.1, "high": 0.01}}}, "tune.space.lora.lr"),
    ({"lora": {"lr": {"low": 0.0, "high": 0.01, "log": True}}}, "log-scale range needs low > 0"),
    ({"lora": {"dropout": {"low": 0.5, "high": 1.5}}}, "tune.space.lora.dropout = 1.5"),  # outside lora's Config
    ({"lora": {"lr": {}, "rank": {}, "alpha": {}}}, "nothing is left to search"),
])
def test_a_bad_search_space_is_one_line_naming_the_knob(space, expected):
    with pytest.raises(ParamsError) as error:
        search_space(parse_params(_params(space=space)), "lora")
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_tuning_stream_that_only_renames_the_evaluation_stream_is_refused():
    with pytest.raises(ParamsError, match="the tuning stream is the evaluation stream under another name"):
        tuning_stream(parse_params(_params(stream={"name": "other"})))
    with pytest.raises(ParamsError, match="tune.methods: no entry 'nope'"):
        parse_params(_params(methods=["nope"]))


def _env(prefect_api_url: str, store: str) -> dict:
    return {**os.environ, "PREFECT_API_URL": prefect_api_url, "MLFLOW_TRACKING_URI": store,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _project(base: Path, params: dict, env: dict) -> Path:
    base.mkdir(parents=True)
    write_params(base, params)
    prepared = subprocess.run([sys.executable, "-m", "flows.prepare", "--root", str(base)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    assert prepared.returncode == 0, prepared.stderr
    return base


def _tune(root: Path, env: dict, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.tune", "--root", str(root)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_a_tuning_stream_that_shares_rows_with_the_evaluation_stream_is_refused_with_one_line(
        prefect_api_url, mlflow_store, tmp_path):
    env = _env(prefect_api_url, mlflow_store)
    # The same generator draw in another class order: every row is in both streams.
    params = _params(stream={"pretrain_classes": [6, 7, 8, 9], "window_classes": [[0, 1], [2, 3], [4, 5]]})
    root = _project(tmp_path / "overlap", params, env)
    out, err = _tune(root, env).communicate(timeout=300)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: params.yaml: tune.stream: the tuning stream"), err
    assert "shares" in lines[0] and "row(s) with the evaluation stream 'tiny-classinc'" in lines[0]
    assert not (root / "results" / "tune" / "chosen.json").exists()


def _schema_ready(path: Path) -> bool:
    """Whether the stage has finished creating the study file's tables. Opening it with
    Optuna before then would create them too, racing the stage (UNIQUE constraint failed:
    alembic_version). A plain connection, not a read-only one: after a SIGKILL mid-write the
    next reader must roll the stage's hot journal back, which a read-only one cannot do."""
    import sqlite3

    if not path.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            return db.execute("SELECT count(*) FROM alembic_version").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def _finished(root: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    path = root / ".slowfast" / "tune" / "optuna.db"
    if not _schema_ready(path):
        return {}
    url = f"sqlite:///{path}"
    out = {}
    for summary in optuna.get_all_study_summaries(url):
        trials = optuna.load_study(study_name=summary.study_name, storage=url).trials
        out[summary.study_name] = trials
    return out


def _slow_trials() -> dict:
    params = _params()
    params["methods"]["lora"] = {"epochs": 25}  # trials of a few seconds: a kill lands mid-study
    return params


def test_a_choice_made_for_an_edited_method_block_stops_the_stream_not_the_stages_before_tune(
    tiny_root, tmp_path, mlflow_store
):
    """Edit a tuned method's block and change the model: `dvc repro` runs pretrain before
    tune, with the old results/tune/chosen.json still there. Pretrain must run; the
    `-tuned` entry it no longer matches is refused where it would be used."""
    import shutil

    import yaml

    from components.workspace import open_workspace
    from tasks.pretrain import pretrain

    root = tmp_path / "root"
    shutil.copytree(tiny_root, root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    stale = {"replay": {"base": {**params["methods"]["replay"], "lr": 0.5}, "method": "replay", "config": {}}}
    (root / "results" / "tune").mkdir(parents=True)
    (root / "results" / "tune" / "chosen.json").write_text(json.dumps({"objective": "acc", "methods": stale}))
    with pytest.raises(ParamsError, match="chosen for another methods.replay block"):
        open_workspace("params.yaml", root)
    assert "replay-tuned" not in open_workspace("params.yaml", root, tuned=False).params.methods
    pretrain.fn("params.yaml", str(root))
    assert (open_workspace("params.yaml", root, tuned=False).layout.slow_model).is_file()


@pytest.fixture(scope="module")
def reference_choice(prefect_api_url, tmp_path_factory) -> dict:
    """The study run whole, in the stage's own process, on sqlite: what every other way of
    running it must choose."""
    base = tmp_path_factory.mktemp("tune-reference")
    env = _env(prefect_api_url, f"sqlite:///{base / 'mlflow.db'}")
    root = _project(base / "project", _slow_trials(), env)
    out, err = _tune(root, env).communicate(timeout=600)
    assert err.strip() == "", err
    chosen = json.loads((root / "results" / "tune" / "chosen.json").read_text())["methods"]["lora"]
    assert chosen["trials"] == 4 and set(chosen["config"]) == {"lr", "rank", "alpha"}
    return chosen


def test_a_killed_stage_on_a_cluster_resumes_its_study_without_repeating_trials_and_chooses_the_same(
        reference_choice, prefect_api_url, mlflow_store, tmp_path):
    """SIGKILL of the stage's process group (flow and Dask workers) mid-study; the rerun
    keeps every finished trial, asks the interrupted slot again and ends with the choice of
    the uninterrupted in-process run: 2 workers or none, killed or not, the same."""
    env = _env(prefect_api_url, mlflow_store)
    params = _slow_trials()
    params["parallel"] = {"workers": 2}
    killed = _project(tmp_path / "killed", params, env)
    process = _tune(killed, env, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # two trials told, the third one running
        trials = [t for study in _finished(killed).values() for t in study]
        if sum(t.state in FINISHED for t in trials) >= 2 and any(t.state.name == "RUNNING" for t in trials):
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 30  # its loopback `mlflow server`, in a session of its own, stops too
    while _processes_naming(mlflow_store) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_naming(mlflow_store), "the killed stage's mlflow server outlived it"
    before = {t.number: (t.params, t.value) for trials in _finished(killed).values() for t in trials if t.state in FINISHED}
    assert 2 <= len(before) < 4, "the kill must land mid-study"

    out, err = _tune(killed, env).communicate(timeout=600)
    assert err.strip() == "", err
    assert f"{4 - len(before)} trial(s) to run" in out and "interrupted trial(s) asked again" in out
    (study,) = _finished(killed).values()
    finished = [t for t in study if t.state in FINISHED]
    assert len(finished) == 4  # the finished trials were kept, not run again
    assert all(before[n] == (t.params, t.value) for t in finished if (n := t.number) in before)
    again = json.loads((killed / "results" / "tune" / "chosen.json").read_text())["methods"]["lora"]
    assert (again["config"], again["value"]) == (reference_choice["config"], reference_choice["value"])
    second = _tune(killed, env).communicate(timeout=600)[0]
    assert "4 trial(s) finished earlier: kept" in second  # an unchanged search is not tuned again


def _processes_naming(text: str) -> list[str]:
    """Command lines of this machine's processes that contain `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if text in line:
            found.append(line)
    return found


def test_studies_on_postgresql_with_two_workers_choose_the_same(reference_choice, prefect_api_url, mlflow_store,
                                                                postgres, tmp_path):
    """Many machines keep their studies in PostgreSQL (tune.storage): a real server here."""
    env = _env(prefect_api_url, mlflow_store)
    params = _slow_trials()
    params["parallel"] = {"workers": 2}
    params["tune"]["storage"] = postgres
    root = _project(tmp_path / "pg", params, env)
    out, err = _tune(root, env).communicate(timeout=600)
    assert err.strip() == "", err
    chosen = json.loads((root / "results" / "tune" / "chosen.json").read_text())["methods"]["lora"]
    assert (chosen["config"], chosen["value"]) == (reference_choice["config"], reference_choice["value"])
    (summary,) = optuna.get_all_study_summaries(postgres)
    assert summary.study_name == chosen["study"] and summary.n_trials == 4
    assert not (root / ".slowfast" / "tune" / "optuna.db").exists()


def test_workers_on_other_machines_cannot_share_a_sqlite_study(monkeypatch, tmp_path):
    """A remote Dask scheduler with the default sqlite study is one line naming tune.storage
    (the tracking store is a server here, so only the study is at fault)."""
    from contextlib import ExitStack

    from adapters.engine import units_task_runner
    from components.workspace import open_workspace

    params = _params()
    params["parallel"] = {"workers": 2, "scheduler": "tcp://10.1.2.3:8786"}
    write_params(tmp_path, params)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    ws = open_workspace("params.yaml", tmp_path)
    with ExitStack() as stack, pytest.raises(ParamsError) as error:
        units_task_runner(stack, ws, (f"sqlite:///{tmp_path / 'optuna.db'}",))
    assert "cannot write the sqlite study" in str(error.value) and "tune.storage" in str(error.value)


def test_a_study_file_outside_the_project_is_refused_before_anything_runs(tmp_path):
    """A shared params.yaml names no file: the sqlite study is always .slowfast/tune/optuna.db."""
    params = _params(storage=f"sqlite:///{tmp_path / 'elsewhere' / 'study.db'}")
    root = tmp_path / "project"
    root.mkdir()
    write_params(root, params)
    done = subprocess.run([sys.executable, "-m", "flows.tune", "--root", str(root)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "tune.storage: a sqlite study lives in .slowfast/tune/optuna.db" in done.stderr
    assert not (tmp_path / "elsewhere").exists() and not (root / ".slowfast").exists()
