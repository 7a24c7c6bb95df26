"""End to end: `dvc repro` on tiny params in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from adapters.servers import ServerDidNotStart, wait_for
from benchmarks._project import copy_repository
from tests.conftest import tiny_params, write_params

pytestmark = pytest.mark.e2e
E2E_METHODS = ("finetune", "lora", "replay")
# A tiny study: lora tuned on another draw in another class order, evaluated as lora-tuned.
E2E_TUNE = {"methods": ["lora"], "trials": 3, "startup_trials": 2,
            "stream": {"seed": 7, "pretrain_classes": [6, 7, 8, 9], "window_classes": [[0, 1], [2, 3], [4, 5]]}}
EVALUATED = (*E2E_METHODS, "lora-tuned")
# A tiny text stream: three folders of data/raw/text, two learners.
E2E_TEXT = {"name": "tiny-text", "corpus": "files", "segment": 32, "doc_bytes": 256, "width": 16, "hidden": 32,
            "pretrain_steps": 20, "consolidate_bytes": 128, "test_share": 0.3,
            "windows": [{"name": w, "glob": f"text/{w}/*.txt"} for w in ("w0", "w1", "w2")],
            "methods": {"static": {}, "dynamic_eval": {"steps": 1}}}


def _copy_repository(dest: Path) -> None:
    copy_repository(dest)  # the same copy the benchmarks run in
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback, with its own sqlite store and artifact proxy."""
    home = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--artifacts-destination", str(home / "artifacts")],
        cwd=home, stdout=subprocess.DEVNULL, stderr=(home / "server.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("mlflow server did not answer /health within 90 s")
    yield url
    process.terminate()
    process.wait(timeout=30)


def rest(base: str, endpoint: str, body: dict | None = None, **query) -> dict:
    """One call to MLflow's REST API: GET with query parameters, or POST with a JSON body."""
    url = f"{base}/api/2.0/mlflow/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def project(prefect_api_url, mlflow_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    _copy_repository(root)
    params = tiny_params()
    # The pipeline, not each method, is under test here (tests/test_methods.py covers them all).
    params["methods"] = {m: params["methods"][m] for m in E2E_METHODS}
    params["parallel"] = {"workers": 2}  # the default engine: units on a local Dask cluster
    params["tune"] = E2E_TUNE
    params["text"] = E2E_TEXT
    for window, word in (("w0", "alpha"), ("w1", "beta"), ("w2", "gamma")):  # your own corpus, windows by folder
        (root / "data" / "raw" / "text" / window).mkdir(parents=True)
        for i in range(8):
            (root / "data" / "raw" / "text" / window / f"doc{i}.txt").write_text(f"{word} {i} says hello. " * 20)
    write_params(root, params)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_API_URL": prefect_api_url,  # the session's test server: no temporary server per stage
        "MLFLOW_TRACKING_URI": mlflow_server,
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)

    first = run("dvc", "repro")
    return {"root": root, "env": env, "run": run, "first": first}


def test_repro_runs_every_stage_quietly(project):
    first = project["first"]
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout + first.stderr
    for stage in ("prepare", "pretrain", "tune", "stream", "compare", "text"):
        assert f"Running stage '{stage}'" in out
    assert "[lora seed 0] window 3/3" in out  # one progress line per window
    assert "champion:" in out and "mlflow ui --backend-store-uri" in out
    assert "Traceback" not in out
    assert "Warning" not in out and "WARNING" not in out
    assert "Starting temporary server" not in out


def test_the_mlflow_server_holds_runs_histories_artifacts_and_the_champion(project):
    base = project["env"]["MLFLOW_TRACKING_URI"]
    experiment = rest(base, "experiments/get-by-name", experiment_name="tiny-classinc")["experiment"]
    runs = rest(base, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                      "filter": "tags.phase = 'stream'", "max_results": 100})["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs]
    assert sorted(t["method"] for t in tags) == sorted(EVALUATED)
    assert all(r["info"]["status"] == "FINISHED" for r in runs)

    lora = next(r for r, t in zip(runs, tags) if t["method"] == "lora")["info"]["run_id"]
    history = rest(base, "metrics/get-history", run_id=lora, metric_key="acc_seen")["metrics"]
    assert sorted(m["step"] for m in history) == [0, 1, 2, 3]
    curve = rest(base, "metrics/get-history", run_id=lora, metric_key="cl_acc_w0")["metrics"]
    assert len(curve) > 4
    files = {f["path"] for f in rest(base, "artifacts/list", run_id=lora)["files"]}
    assert {"accuracy_matrix.csv", "accuracy_matrix.png", "continual.csv"} <= files

    champion = rest(base, "registered-models/alias", name="slowfast-tiny-classinc", alias="champion")
    compare = json.loads((project["root"] / "results" / "compare.json").read_text())
    version_tags = {t["key"]: t["value"] for t in champion["model_version"]["tags"]}
    # the best method that is not a reference point (finetune is the lower bound)
    assert compare["finetune"]["reference"] and not compare["lora"]["reference"]
    assert version_tags["method"] == next(name for name, m in compare.items() if not m["reference"])
    assert champion["model_version"]["run_id"] in {r["info"]["run_id"] for r in runs}
    assert "acc" in champion["model_version"]["description"] and "class probabilities" in champion["model_version"]["description"]

    # the method is a param (the compare view groups by it); values are exact, not float32 noise
    params = {p["key"]: p["value"] for p in rest(base, "runs/get", run_id=lora)["run"]["data"]["params"]}
    assert params["method"] == "lora" and params["method.rank"] and params["reference"] == "no"
    for key in ("acc_seen", "acc_w0", "cl_acc_w0"):
        for point in rest(base, "metrics/get-history", run_id=lora, metric_key=key)["metrics"]:
            value = point["value"]
            assert not (float(np.float32(value)) == value and round(value, 6) != value), (key, value)


def test_tuned_on_the_tuning_stream_evaluated_beside_the_defaults_and_traced_to_its_study(project):
    """tune -> stream -> compare: lora's knobs chosen by a 3-trial study on the tuning stream,
    evaluated as lora-tuned, compared side by side; MLflow holds the tuning run with a child
    run per trial and its figures, and the evaluation run names the tuning run."""
    root = project["root"]
    chosen = json.loads((root / "results" / "tune" / "chosen.json").read_text())["methods"]
    assert list(chosen) == ["lora"] and chosen["lora"]["trials"] == 3
    assert chosen["lora"]["tuning_stream"] == "tiny-classinc-tune"
    assert (root / "results" / "methods" / "lora-tuned" / "metrics.json").is_file()
    assert "## Defaults vs tuned (knobs chosen on the tuning stream)" in (root / "results" / "compare.md").read_text()
    rows = json.loads((root / "results" / "tuning_comparison.json").read_text())["rows"]
    assert {r["method"]: r["tuned"] for r in rows} == {"finetune": False, "lora": True, "replay": False}
    assert "both columns: acc on the evaluation stream" in project["first"].stdout

    base = project["env"]["MLFLOW_TRACKING_URI"]
    experiment = rest(base, "experiments/get-by-name", experiment_name="tiny-classinc-tuning")["experiment"]
    runs = rest(base, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs}
    (parent,) = [run_id for run_id, t in tags.items() if "mlflow.parentRunId" not in t]
    children = [run_id for run_id, t in tags.items() if t.get("mlflow.parentRunId") == parent]
    assert len(children) == 3 and tags[parent]["study"] == chosen["lora"]["study"]
    files = {f["path"] for f in rest(base, "artifacts/list", run_id=parent, path="tuning")["files"]}
    assert {"tuning/lora.csv", "tuning/lora_history.png"} <= files
    evaluation = [t for t in (dict(r) for r in _run_tags(project)) if t.get("method") == "lora-tuned"]
    assert evaluation and all(t["tuning_run"] == parent and t["tuned_from"] == "lora" for t in evaluation)


def _run_tags(project) -> list[dict[str, str]]:
    base = project["env"]["MLFLOW_TRACKING_URI"]
    experiment = rest(base, "experiments/get-by-name", experiment_name="tiny-classinc")["experiment"]
    runs = rest(base, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                      "filter": "tags.phase = 'stream'", "max_results": 100})["runs"]
    return [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs]


def test_the_text_stage_through_dvc_compares_learners_in_bits_per_byte(project):
    root, run = project["root"], project["run"]
    assert "text: fast learners, best bpb_fast first" in project["first"].stdout
    shown = run("dvc", "metrics", "show", "results/text/metrics")
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[1:] if line.strip()}
    assert set(rows) == {"results/text/metrics/static.json", "results/text/metrics/dynamic_eval.json"}
    compare = json.loads((root / "results" / "text" / "compare.json").read_text())
    assert list(compare)[0] == min(compare, key=lambda e: compare[e]["mean"]["bpb_fast"])  # lowest bpb first
    manifest = json.loads((root / "results" / "text" / "manifest.json").read_text())
    assert [w["name"] for w in manifest["windows"]] == ["w0", "w1", "w2"]


def test_dvc_metrics_show_prints_a_short_row_per_method(project):
    metrics = project["run"]("dvc", "metrics", "show")
    assert metrics.returncode == 0, metrics.stderr
    lines = [line for line in metrics.stdout.splitlines() if line.strip()]
    assert max(map(len, lines)) <= 120, metrics.stdout
    for method in E2E_METHODS:
        row = next(line for line in lines if f"results/metrics/{method}.json" in line)
        assert len(row.split()) == 6  # the path, acc, bwt, forgetting, min_acc, wc_acc
    assert "seconds" not in metrics.stdout and "_std" not in metrics.stdout


def test_dvc_plots_show_renders_offline(project):
    """DVC's HTML draws Vega charts with scripts from a CDN: offline they render as nothing.
    The plots are PNG figures, embedded as images whose files are written beside the page."""
    root = project["root"]
    plots = project["run"]("dvc", "plots", "show", "-o", "dvc_plots")
    assert plots.returncode == 0, plots.stderr
    html = (root / "dvc_plots" / "index.html").read_text()
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")
    images = re.findall(r'<img src="([^"]+)"', html)
    expected = {"continual_accuracy.png", "headline_metrics.png", *(f"heatmap_{m}.png" for m in EVALUATED),
                "bpb_by_position.png", "bpb_matrix_static.png", "bpb_matrix_dynamic_eval.png"}
    assert {Path(urllib.parse.unquote(src)).name.removeprefix("workspace_results_plots_figures_")
            .removeprefix("workspace_results_text_figures_") for src in images} == expected
    for src in images:
        image = (root / "dvc_plots" / urllib.parse.unquote(src)).read_bytes()
        assert image.startswith(b"\x89PNG")


def _stream_runs(project) -> dict[str, str]:
    """run id -> method of every method run in the store."""
    base = project["env"]["MLFLOW_TRACKING_URI"]
    experiment = rest(base, "experiments/get-by-name", experiment_name="tiny-classinc")["experiment"]
    runs = rest(base, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                      "filter": "tags.phase = 'stream'", "max_results": 100})["runs"]
    return {r["info"]["run_id"]: next(t["value"] for t in r["data"]["tags"] if t["key"] == "method") for r in runs}


def test_second_repro_reruns_nothing_and_a_param_change_retrains_only_its_method(project):
    again = project["run"]("dvc", "repro")
    assert again.returncode == 0
    assert "Running stage" not in again.stdout

    root = project["root"]
    before = _stream_runs(project)
    kept = {p: p.read_bytes() for m in ("finetune", "replay") for p in sorted((root / "results" / "methods" / m).rglob("*"))
            if p.is_file()}
    params_path = root / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["methods"]["lora"]["rank"] = 3
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    changed = project["run"]("dvc", "repro")
    assert changed.returncode == 0, changed.stderr
    ran = {line.split("'")[1] for line in changed.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"tune", "stream", "compare"}
    # rank is a knob lora's search sets: the study and lora-tuned are kept, only lora trains
    assert "[lora] study" in changed.stdout and "3 trial(s) finished earlier: kept" in changed.stdout
    assert "[lora-tuned] unchanged since its results were written: kept" in changed.stdout
    assert "[finetune] unchanged since its results were written: kept" in changed.stdout
    assert "[replay] unchanged since its results were written: kept" in changed.stdout
    assert "[lora seed 0] window 3/3" in changed.stdout and "[finetune seed 0] window" not in changed.stdout
    after = _stream_runs(project)
    new = {run: method for run, method in after.items() if run not in before}
    assert sorted(new.values()) == ["lora"]  # the kept methods' MLflow runs are untouched
    assert {p: p.read_bytes() for p in kept} == kept


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


def test_a_second_checkout_pulling_from_a_dvc_remote_has_nothing_to_rerun_and_a_forced_rerun_changes_no_file(project, tmp_path):
    """What DVC hashes holds only what the inputs determine: a collaborator's clone plus the
    DVC cache is up to date, and rerunning every stage leaves git's view unchanged."""
    root, run = project["root"], project["run"]
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    assert run(*git, "add", "-A").returncode == 0
    assert run(*git, "commit", "-qm", "pipeline").returncode == 0
    env = project["env"]
    # The collaborator gets the data through a DVC remote (a directory here, as on a shared disk).
    remote = tmp_path / "dvc-remote"
    assert run("dvc", "remote", "add", "--local", "-d", "shared", str(remote)).returncode == 0
    pushed = run("dvc", "push")
    assert pushed.returncode == 0 and any(remote.rglob("*")), pushed.stdout + pushed.stderr
    clone = tmp_path / "clone"
    assert subprocess.run(["git", "clone", "-q", str(root), str(clone)], capture_output=True).returncode == 0
    assert subprocess.run(["dvc", "remote", "add", "--local", "-d", "shared", str(remote)], cwd=clone, env=env,
                          capture_output=True).returncode == 0
    pulled = subprocess.run(["dvc", "pull"], cwd=clone, env=env, capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert (clone / "models" / "slow" / "model.pt").read_bytes() == (root / "models" / "slow" / "model.pt").read_bytes()
    status = subprocess.run(["dvc", "status"], cwd=clone, env=env, capture_output=True, text=True)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout + status.stderr

    forced = run("dvc", "repro", "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    changed = run("git", "status", "--porcelain").stdout.split("\n")
    assert [line for line in changed if line.strip()] == [], changed


def test_dvc_exp_run_with_a_set_param_survives_the_yaml_rewrite_and_is_told_apart(project):
    """`dvc exp run -S` rewrites params.yaml as YAML 1.1 (`"off"` becomes `off`, read as
    false): the params still load, only the changed method trains, its runs carry the
    experiment's name, and `dvc exp show --only-changed` shows what changed."""
    from components.config import load_params

    root, run = project["root"], project["run"]
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ops"] = {"drift": {"detector": "off"}}
    write_params(root, params)
    assert run(*git, "add", "-A").returncode == 0 and run(*git, "commit", "-qm", "ops").returncode == 0
    before = _stream_runs(project)

    exp = run("dvc", "exp", "run", "-n", "lora-epochs2", "-S", "methods.lora.epochs=2")
    assert exp.returncode == 0, exp.stdout[-2000:] + exp.stderr[-2000:]
    assert "detector: off" in (root / "params.yaml").read_text()  # DVC's rewrite, unquoted
    assert load_params(root / "params.yaml").ops.drift.detector == "off"
    assert "[finetune] unchanged since its results were written: kept" in exp.stdout
    new = {run_id: method for run_id, method in _stream_runs(project).items() if run_id not in before}
    assert sorted(new.values()) == ["lora", "lora-tuned"]
    base = project["env"]["MLFLOW_TRACKING_URI"]
    tags = {t["key"]: t["value"] for t in rest(base, "runs/get", run_id=next(iter(new)))["run"]["data"]["tags"]}
    assert tags["dvc_exp"] == "lora-epochs2" and len(tags["params_digest"]) == 16

    shown = run("dvc", "exp", "show", "--only-changed", "--csv")
    assert shown.returncode == 0, shown.stderr
    header = shown.stdout.splitlines()[0].split(",")
    assert "methods.lora.epochs" in header
    changed = run("git", "diff", "--quiet", "HEAD", "--", "results/metrics/lora.json").returncode == 1
    assert ("results/metrics/lora.json:acc" in header) == changed  # shown exactly when lora's numbers moved
    assert not [c for c in header if c.startswith(("results/metrics/finetune", "results/metrics/replay"))]
    assert run("git", "checkout", "--", "params.yaml").returncode == 0


def test_serving_the_champion_over_http_and_through_pyfunc(project, tmp_path):
    """README "Serving": scripts/serve.sh runs `mlflow models serve` on @champion (with the
    venv's bin off PATH, where a bare `mlflow models serve` exits 127 for want of uvicorn);
    rows of features in, one probability per class out, class names in the model's metadata."""
    import mlflow

    root, env = project["root"], dict(project["env"])
    (root / ".venv").symlink_to(Path(sys.executable).parents[1], target_is_directory=True)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != Path(sys.executable).parent)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(["bash", "scripts/serve.sh", "", str(port)], cwd=root, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_for(f"http://127.0.0.1:{port}/ping", 180, server)
        except ServerDidNotStart:
            pytest.fail("the scoring server did not answer /ping: " + (tmp_path / "serve.log").read_text()[-3000:])
        manifest = json.loads((root / "data" / "streams" / "tiny-classinc" / "stream.json").read_text())
        rows = np.random.default_rng(0).normal(size=(3, manifest["schema"]["x"]["size"])).round(3).tolist()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps({"inputs": rows}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())["predictions"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    probabilities = np.array(answer if isinstance(answer[0], list) else [list(r.values()) for r in answer])
    assert probabilities.shape == (3, len(manifest["class_names"]))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model("models:/slowfast-tiny-classinc@champion")
    assert model.metadata.metadata["class_names"] == manifest["class_names"]
    local = model.predict(np.array(rows, dtype=np.float32))
    np.testing.assert_allclose(np.asarray(local), probabilities, rtol=1e-5)


def test_run_sh_exits_0_and_leaves_no_server_running(project):
    """./run.sh as a user runs it: its own Prefect and MLflow servers, `dvc repro`, the table.
    Once it exited 143 after a successful run (`set -e` inside its exit trap) and left the
    MLflow server running."""
    root, env = _run_sh_setting(project)
    # run.sh writes to this project's own store (mlflow.db), which holds none of the models the
    # test server registered: the methods train again, so compare finds their versions there.
    for folder in ("results/methods", ".slowfast/runs"):
        shutil.rmtree(root / folder, ignore_errors=True)
    done = subprocess.run(["./run.sh"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "champion:" in done.stdout and "To track the changes with git" not in done.stdout
    assert "To keep these results, commit them: git add" in done.stdout  # DVC's hint, one line
    assert max(len(line) for line in done.stdout.splitlines()) <= 150
    left = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True).stdout.split()
    assert left == [], subprocess.run(["ps", "-o", "pid,cmd", "-p", ",".join(left)], capture_output=True, text=True).stdout
    # the units ran on the pipeline's cluster (no stage started its own), now stopped with its
    # workers and their fork server, whose command lines do not name the project: every
    # process ./run.sh started inherited its working directory in PWD
    cluster = json.loads((root / ".slowfast" / "dask-cluster.json").read_text())
    assert cluster["state"] == "ready" and "of its own" not in done.stdout
    assert _processes_started_in(root) == []


def test_run_sh_stopped_mid_stream_stops_everything_and_the_next_run_continues(project):
    """A scheduler's timeout stops ./run.sh with SIGTERM to it alone: it used to stop its
    servers and leave `dvc repro` and the stage running without them, hung for minutes
    retrying them. Now the pipeline stops first (one line, no traceback), then the servers,
    and nothing is left; the next ./run.sh continues and ends with the same numbers."""
    root, env = _run_sh_setting(project)
    before = {p: p.read_text() for p in sorted((root / "results" / "methods").glob("*/seed*/metrics.json"))}
    assert before
    for folder in ("results/methods", ".slowfast/runs"):
        shutil.rmtree(root / folder, ignore_errors=True)
    stopped = _run_sh_stopped_at(root, env, "window 1/")
    assert stopped["returncode"] == 143 and stopped["seconds"] < 30, stopped["output"][-3000:]
    assert "interrupted: what was finished is kept" in stopped["output"], stopped["output"][-3000:]
    assert "Traceback" not in stopped["output"], stopped["output"][-3000:]
    assert _processes_started_in(root) == []
    done = subprocess.run(["./run.sh"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming at window" in done.stdout or "finished by the interrupted run" in done.stdout, done.stdout[-3000:]
    assert {p: p.read_text() for p in before} == before
    assert _processes_started_in(root) == []


def _run_sh_setting(project: dict) -> tuple[Path, dict]:
    """The project and environment ./run.sh runs in as a user's: its own servers, not the session's."""
    root = project["root"]
    if not (root / ".venv").exists():
        (root / ".venv").symlink_to(Path(sys.executable).parents[1], target_is_directory=True)
    return root, {k: v for k, v in project["env"].items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}


def _run_sh_stopped_at(root: Path, env: dict, line: str) -> dict:
    """./run.sh started as a terminal starts it, sent SIGTERM once a line containing `line` is out."""
    import signal

    process = subprocess.Popen(["./run.sh"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out = []
    for text in process.stdout:
        out.append(text)
        if line in text:
            break
    began = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=120)
    return {"returncode": process.returncode, "seconds": time.perf_counter() - began, "output": "".join(out) + rest}


def _processes_started_in(root: Path) -> list[str]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"PWD={root}\0".encode() in environ.read_bytes():
                found.append((environ.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # ended meanwhile, or not ours to read
    return found


def _users_table(path: Path, rows: int = 600, bad_row: int | None = None) -> None:
    lines = ["amount,hour,kind,day"]
    for i in range(rows):
        amount = "oops" if i == bad_row else f"{(i * 37 % 100) / 10 + (3 if i % 3 == 0 else 0):.2f}"
        lines.append(f"{amount},{i % 24},{'fraud' if i % 3 == 0 else 'ok'},2024-03-0{1 + i * 3 // rows} 12:00:00")
    path.write_text("\n".join(lines) + "\n")


def _table_params(path: str) -> dict:
    params = tiny_params()
    params["stream"] = {
        "name": "tiny-classinc", "source": "table", "test_fraction": 0.25,
        "table": {"path": path, "label": "kind", "window": {"timestamp": "day", "length": "1d"}},
    }
    return params


def test_a_bad_table_ends_with_one_line_and_keeps_the_stream(project):
    root = project["root"]
    stream = root / "data" / "streams" / "tiny-classinc"
    before = {p: p.read_bytes() for p in sorted(stream.rglob("*")) if p.is_file()}
    _users_table(root / "data" / "raw" / "bad.csv", bad_row=17)
    (root / "badtable").mkdir()
    write_params(root / "badtable", _table_params("data/raw/bad.csv"))
    result = project["run"]("python", "-m", "flows.prepare", "--params", "badtable/params.yaml")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]], result.stderr
    assert "data/raw/bad.csv: feature column 'amount' is String, expected a number" in lines[0]
    assert {p: p.read_bytes() for p in sorted(stream.rglob("*")) if p.is_file()} == before
    (root / "data" / "raw" / "bad.csv").unlink()


def test_readme_path_for_a_users_table(project):
    """Put the file under data/raw/, `dvc add` it, set the params, `dvc repro`: last in this
    module because it switches the project's stream."""
    root, run = project["root"], project["run"]
    _users_table(root / "data" / "raw" / "payments.csv")
    assert run("dvc", "add", "data/raw/payments.csv").returncode == 0
    write_params(root, {**_table_params("data/raw/payments.csv"), "methods": yaml.safe_load((root / "params.yaml").read_text())["methods"]})
    result = run("dvc", "repro", "prepare")
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((root / "data" / "streams" / "tiny-classinc" / "stream.json").read_text())
    assert manifest["class_names"] == ["fraud", "ok"] and manifest["num_windows"] == 3
    assert "prepare" not in run("dvc", "status", "prepare").stdout
    _users_table(root / "data" / "raw" / "payments.csv", rows=660)  # new data arrives
    assert run("dvc", "add", "data/raw/payments.csv").returncode == 0
    assert "prepare" in run("dvc", "status", "prepare").stdout  # the new version reruns prepare
