"""End to end: `dvc repro` on tiny params in a temporary copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, tiny_params, write_params

pytestmark = pytest.mark.e2e


def _copy_repository(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file() and not name.startswith(("results/", "dvc.lock")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)


@pytest.fixture(scope="module")
def project(prefect_api_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    _copy_repository(root)
    write_params(root, tiny_params())
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_API_URL": prefect_api_url,  # the session's test server: no temporary server per stage
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)

    first = run("dvc", "repro")
    return {"root": root, "env": env, "run": run, "first": first}


def test_repro_runs_every_stage_quietly(project):
    first = project["first"]
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout + first.stderr
    for stage in ("prepare", "pretrain", "stream@finetune", "stream@lora", "stream@distill", "stream@joint", "compare"):
        assert f"Running stage '{stage}'" in out
    assert "[lora] window 3/3" in out  # one progress line per window
    assert "champion:" in out and "mlflow ui --backend-store-uri" in out
    assert "Traceback" not in out
    assert "Warning" not in out and "WARNING" not in out
    assert "Starting temporary server" not in out


def test_mlflow_holds_a_run_per_method_and_the_champion(project):
    client = MlflowClient(tracking_uri=project["env"]["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("tiny-classinc")
    runs = client.search_runs([experiment.experiment_id], "tags.phase = 'stream'")
    assert sorted(r.data.tags["method"] for r in runs) == ["distill", "finetune", "joint", "lora"]
    assert all(r.info.status == "FINISHED" for r in runs)
    champion = client.get_model_version_by_alias("slowfast-tiny-classinc", "champion")
    compare = yaml.safe_load((project["root"] / "results" / "compare.json").read_text())
    assert champion.tags["method"] == next(iter(compare))


def test_second_repro_reruns_nothing_and_a_param_change_reruns_only_its_method(project):
    again = project["run"]("dvc", "repro")
    assert again.returncode == 0
    assert "Running stage" not in again.stdout

    params_path = project["root"] / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["methods"]["lora"]["rank"] = 3
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    changed = project["run"]("dvc", "repro")
    assert changed.returncode == 0, changed.stderr
    ran = {line.split("'")[1] for line in changed.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"stream@lora", "compare"}


def test_bad_params_end_with_one_line_and_keep_outputs(project):
    root = project["root"]
    model = (root / "models" / "slow" / "model.pt").read_bytes()
    bad = tiny_params()
    bad["pretrain"]["lr"] = "fast"
    (root / "bad").mkdir()
    write_params(root / "bad", bad)
    result = project["run"]("python", "-m", "flows.pretrain", "--params", "bad/params.yaml")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: ") and "pretrain.lr" in lines[0]
    assert (root / "models" / "slow" / "model.pt").read_bytes() == model
