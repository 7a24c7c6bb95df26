"""The flows against a real Prefect test server and a real sqlite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from tests.conftest import tiny_params, write_params


@pytest.fixture(scope="module")
def pipeline(prefect_api_url, tmp_path_factory):
    """Run prepare, pretrain, two methods and compare once; tests below inspect the results."""
    root = tmp_path_factory.mktemp("project")
    store = root / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    params = tiny_params(seeds=[0, 1])
    params["evaluation"] = {**params["evaluation"], "prequential": True}
    params["methods"] = {"finetune": params["methods"]["finetune"], "lora": {**params["methods"]["lora"], "rank": 3}}
    write_params(root, params)

    from flows.compare import compare_flow
    from flows.prepare import prepare_flow
    from flows.pretrain import pretrain_flow
    from flows.stream import methods_flow

    states = {name: fn(root=str(root), return_state=True) for name, fn in
              (("prepare-stream", prepare_flow), ("pretrain", pretrain_flow), ("slow-fast-methods", methods_flow),
               ("compare-methods", compare_flow))}
    results = {name: state.result() for name, state in states.items()}
    yield {"root": root, "uri": uri, "params": params, "prepared": results["prepare-stream"], "records": results["slow-fast-methods"],
           "compared": results["compare-methods"],
           "flow_runs": {name: state.state_details.flow_run_id for name, state in states.items()}}
    mp.undo()


def test_a_rerun_keeps_every_unchanged_method_and_logs_nothing(pipeline, capsys):
    from flows.stream import methods_flow

    client = _client(pipeline)
    experiment = client.get_experiment_by_name("tiny-classinc").experiment_id
    before = {r.info.run_id: r.info.end_time for r in client.search_runs([experiment])}
    files = {p: p.read_bytes() for p in sorted((pipeline["root"] / "results" / "methods").rglob("*")) if p.is_file()}
    again = methods_flow(root=str(pipeline["root"]))
    assert again == pipeline["records"]
    assert "unchanged since its results were written: kept" in capsys.readouterr().out
    assert {r.info.run_id: r.info.end_time for r in client.search_runs([experiment])} == before
    assert {p: p.read_bytes() for p in sorted((pipeline["root"] / "results" / "methods").rglob("*")) if p.is_file()} == files


def _client(pipeline) -> MlflowClient:
    return MlflowClient(tracking_uri=pipeline["uri"])


def _run_id(pipeline, method, seed_index=0):
    return pipeline["records"][method]["mlflow_run_ids"][seed_index]


def _method_run(pipeline, method, seed_index=0):
    return _client(pipeline).get_run(_run_id(pipeline, method, seed_index))


def test_one_experiment_per_stream_with_one_run_per_method_and_seed(pipeline):
    client = _client(pipeline)
    experiment = client.get_experiment_by_name("tiny-classinc")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    names = sorted(r.info.run_name for r in runs)
    assert {"pretrain", "finetune-seed0", "finetune-seed1", "lora-seed0", "lora-seed1", "comparison"} <= set(names)
    assert not any("-window" in n for n in names)  # a window adds to its seed's run, not a run of its own


def test_parent_run_carries_params_commit_and_stream_hash(pipeline):
    run = _method_run(pipeline, "lora")
    assert run.info.status == "FINISHED"
    assert run.data.tags["stream_hash"] == pipeline["prepared"]["content_hash"]
    assert len(run.data.tags["git_commit"]) in (40, len("unknown"))
    assert run.data.params["method.rank"] == "3" and run.data.params["method.alpha"] == "8.0"  # set, default
    assert run.data.params["seed"] == "0"


def test_per_window_metrics_use_the_window_index_as_step(pipeline):
    client = _client(pipeline)
    run_id = _run_id(pipeline, "finetune")
    history = client.get_metric_history(run_id, "acc_seen")
    assert [m.step for m in history] == [0, 1, 2, 3]
    final = _method_run(pipeline, "finetune").data.metrics
    for key in ("acc", "bwt", "fwt", "forgetting", "seconds_per_window"):
        assert key in final
    seed_accs = [_method_run(pipeline, "finetune", i).data.metrics["acc"] for i in (0, 1)]
    assert pipeline["records"]["finetune"]["mean"]["acc"] == pytest.approx(sum(seed_accs) / 2)


def test_each_window_adds_its_scalars_and_loss_curve_to_the_seed_run_in_one_call(pipeline):
    """No run per window (seven calls each): the seed's run carries one loss curve over the
    whole stream, step = epochs so far, and each window's scalars at step = window."""
    client = _client(pipeline)
    run_id = _run_id(pipeline, "lora")
    epochs = pipeline["params"]["methods"]["lora"]["epochs"]
    losses = client.get_metric_history(run_id, "loss_train")
    assert sorted(m.step for m in losses) == list(range(3 * epochs))
    assert sorted(m.step for m in client.get_metric_history(run_id, "window/train_rows")) == [1, 2, 3]
    assert sorted(m.step for m in client.get_metric_history(run_id, "window/fast_state_bytes")) == [1, 2, 3]
    experiment = client.get_experiment_by_name("tiny-classinc")
    assert client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'") == []
    record = json.loads((pipeline["root"] / ".slowfast" / "runs" / "tiny-classinc" / "lora" / "seed0.json").read_text())
    # open (at most 6) + at most one per window (3) + close: the unsent windows with the summary
    # (1), the artifacts (3) and the registered model with its version's tags (1); no retries
    assert record["mlflow_calls"] <= 6 + 3 + 5 and record["mlflow_retries"] == 0, record


def test_matrix_artifacts_and_registered_model(pipeline):
    client = _client(pipeline)
    run_id = _run_id(pipeline, "finetune")
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"accuracy_matrix.csv", "accuracy_matrix.png", "continual.csv"} <= artifacts
    csv = (pipeline["root"] / "results" / "methods" / "finetune" / "seed0" / "accuracy_matrix.csv").read_text().splitlines()
    assert csv[0] == "after,w0,w1,w2,w3" and len(csv) == 5
    version = client.get_model_version("slowfast-tiny-classinc", pipeline["records"]["finetune"]["model_version"])
    assert version.run_id == run_id


def test_the_registered_model_shows_its_seeds_figures_and_links_to_its_run(pipeline):
    """MLflow's model page (the experiment's Models tab) shows the seed's summary, and the
    seed's run lists its model at the stream's last step, the state that was registered."""
    client = _client(pipeline)
    run = _method_run(pipeline, "finetune")
    version = client.get_model_version("slowfast-tiny-classinc", pipeline["records"]["finetune"]["model_version"])
    model_id = version.source.removeprefix("models:/")  # the store keeps the logged model in the source
    model = client.get_logged_model(model_id)
    last = max(int(k.removeprefix("acc_w")) for k in run.data.metrics if k.removeprefix("acc_w").isdigit())
    assert (model.source_run_id, model.status.to_proto()) == (run.info.run_id, LoggedModelStatus.READY.to_proto())
    figures = {m.key: m for m in model.metrics}
    assert {"acc", "bwt", "forgetting"} <= set(figures)
    assert figures["acc"].step == last and figures["acc"].value == pytest.approx(run.data.metrics["acc"])
    assert [(o.model_id, o.step) for o in run.outputs.model_outputs] == [(model_id, last)]
    assert model.params == run.data.params and model.tags["method"] == "finetune"
    assert run.info.status == "FINISHED"


def test_champion_alias_goes_to_the_best_method_that_is_not_a_reference(pipeline):
    """finetune (the lower bound) is compared but never crowned: lora is the one deployable
    method here, so it is champion whatever its rank, and there is no challenger."""
    from mlflow.exceptions import MlflowException

    client = _client(pipeline)
    records = pipeline["records"]
    champion = client.get_model_version_by_alias("slowfast-tiny-classinc", "champion")
    assert str(champion.version) == records["lora"]["model_version"]
    assert champion.tags["method"] == "lora" and "lora on tiny-classinc (champion by acc" in champion.description
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("slowfast-tiny-classinc", "challenger")
    compare = json.loads((pipeline["root"] / "results" / "compare.json").read_text())
    best = max(records, key=lambda m: records[m]["mean"]["acc"])
    assert list(compare) == pipeline["compared"]["order"] and list(compare)[0] == best
    assert compare["finetune"]["reference"] and pipeline["compared"]["champions"] == ["lora"]


def test_registered_model_loads_and_predicts_with_pickle_disallowed(pipeline, monkeypatch):
    """The registry holds torch.export archives (pinned, not MLflow's default): a consumer
    that forbids pickle deserialization still loads the champion."""
    import mlflow.pytorch
    import torch

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    mlflow.set_tracking_uri(pipeline["uri"])
    uri = "models:/slowfast-tiny-classinc@champion"
    data = Path(mlflow.artifacts.download_artifacts(f"{uri}/data"))
    assert sorted(p.name for p in data.iterdir()) == ["model.pt2"]  # no pickled model.pth beside it
    model = mlflow.pytorch.load_model(uri)
    assert model(torch.zeros(3, 40)).shape == (3, 10)


def test_each_stage_is_one_completed_flow_run_with_a_task_per_unit(pipeline):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        for name, run_id in pipeline["flow_runs"].items():
            run = client.read_flow_run(run_id)
            assert run.state.is_completed(), (name, run.state)
            assert client.read_flow(run.flow_id).name == name
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[pipeline["flow_runs"]["slow-fast-methods"]])))
    names = sorted(t.name.rsplit("-", 1)[0] for t in tasks)
    # 2 methods x 2 seeds: one task per unit, however many windows
    assert names.count("run-unit") == 4 and "absorb-window" not in names
    assert all(t.state.is_completed() for t in tasks)


def test_continual_curve_is_logged_per_evaluation_point(pipeline):
    client = _client(pipeline)
    run_id = _run_id(pipeline, "finetune")
    steps = [m.step for m in client.get_metric_history(run_id, "cl_acc_w0")]
    assert steps == sorted(steps) and len(steps) > 4  # more points than windows
    old = client.get_metric_history(run_id, "cl_acc_old")
    assert len(old) == len(steps)  # every point is inside some window >= 1, so it has old windows
    metrics = _method_run(pipeline, "finetune").data.metrics
    for key in ("min_acc", "wc_acc", "gap_depth", "gap_depth_w1", "samples_per_second", "peak_memory_mb"):
        assert key in metrics
    prequential = client.get_metric_history(run_id, "prequential_acc")
    assert sorted(m.step for m in prequential) == [1, 2, 3]


def test_seed_summary_has_mean_and_std(pipeline):
    summary = pipeline["records"]["lora"]
    assert summary["seeds"] == [0, 1]
    accs = [_method_run(pipeline, "lora", i).data.metrics["acc"] for i in (0, 1)]
    assert summary["std"]["acc"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    table = (pipeline["root"] / "results" / "compare.md").read_text()
    assert "±" in table


def test_comparison_run_holds_table_and_plots(pipeline):
    client = _client(pipeline)
    run_id = pipeline["compared"]["run_id"]
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"comparison.md", "headline.csv", "compare.json", "figures"} <= top
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert {"figures/continual_accuracy.png", "figures/headline_metrics.png", "figures/heatmap_lora.png"} <= figures


def test_prefect_holds_the_table_and_the_link(pipeline):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read(key):
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    # Other tests in the session publish under the same keys: find this pipeline's pair
    # through the link to its MLflow run, then the table of the same flow run.
    links = [a for a in asyncio.run(read("slowfast-comparison-run")) if pipeline["compared"]["run_id"] in str(a.data)]
    assert len(links) == 1
    tables = [a for a in asyncio.run(read("slowfast-comparison")) if a.flow_run_id == links[0].flow_run_id]
    assert len(tables) == 1 and tables[0].type == "table"
    assert "lora" in str(tables[0].data) and "finetune" in str(tables[0].data)


def test_command_line_runs_skip_prefect_heartbeats_unless_asked(monkeypatch):
    """Prefect joins its heartbeat thread (1 s sleeps) at the end of every flow run; stage
    processes run without heartbeats, unless the user sets the frequency."""
    from prefect.settings import get_current_settings

    from flows._cli import heartbeats_unless_asked

    for name in ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY"):
        monkeypatch.delenv(name, raising=False)
    with heartbeats_unless_asked():
        assert get_current_settings().flows.heartbeat_frequency is None
    outside = get_current_settings().flows.heartbeat_frequency
    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "60")
    with heartbeats_unless_asked():
        assert get_current_settings().flows.heartbeat_frequency == outside


def test_mlflow_calls_do_not_grow_with_training_steps(prefect_api_url, tmp_path, mlflow_store):
    """Tracking cost is per window, not per step: four times the optimizer steps (with the
    continual curve evaluated at every step) make exactly the same number of MLflow calls."""
    from flows.prepare import prepare_flow
    from flows.pretrain import pretrain_flow
    from flows.stream import stream_flow
    from adapters import mlflow_store as tracking

    params = tiny_params()
    params["methods"] = {"finetune": {"epochs": 1}}
    write_params(tmp_path, params)
    prepare_flow(root=str(tmp_path))
    pretrain_flow(root=str(tmp_path))
    calls, points = {}, {}
    for epochs in (1, 4):
        params["methods"]["finetune"]["epochs"] = epochs
        write_params(tmp_path, params)
        before = tracking.CALLS["count"]
        record = stream_flow("finetune", root=str(tmp_path))
        calls[epochs] = tracking.CALLS["count"] - before
        run = MlflowClient().get_run(record["mlflow_run_ids"][0])
        points[epochs] = len(MlflowClient().get_metric_history(run.info.run_id, "cl_acc_w0"))
    assert points[4] > 3 * points[1]  # the curve did grow with the steps
    assert calls[4] == calls[1]


def test_a_flow_reads_params_and_the_stream_once_however_many_windows(prefect_api_url, tmp_path, monkeypatch):
    """One process parses params.yaml and reads the stream's partitions once, not per window
    or per seed (components/workspace.py)."""
    import components.data.loading as loading
    import components.workspace as workspace
    from flows.stream import methods_flow
    from tests.conftest import make_root

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = tiny_params(seeds=[0, 1])
    params["methods"] = {"finetune": params["methods"]["finetune"], "replay": params["methods"]["replay"]}
    root = make_root(tmp_path / "root", params)
    calls = {"parse": 0, "read": 0}
    parse, read = workspace.load_params, loading.read_window

    def counted_parse(*args, **kwargs):
        calls["parse"] += 1
        return parse(*args, **kwargs)

    def counted_read(*args, **kwargs):
        calls["read"] += 1
        return read(*args, **kwargs)

    monkeypatch.setattr(workspace, "_OPEN", {})  # what pretrain opened in this process is forgotten
    monkeypatch.setattr(workspace, "load_params", counted_parse)
    monkeypatch.setattr(loading, "read_window", counted_read)
    methods_flow(root=str(root))  # 2 methods x 2 seeds x 3 windows
    assert calls == {"parse": 1, "read": 8}  # 4 windows x (train, test), once


def test_compare_finds_each_model_by_its_fingerprint_without_this_checkouts_run_records(pipeline):
    """A fresh clone gets results/ from DVC but not .slowfast/: the comparison still names
    the champion, finding each method's registered model by the fingerprint it is tagged with."""
    import shutil

    from flows.compare import compare_flow

    client = _client(pipeline)
    before = client.get_model_version_by_alias("slowfast-tiny-classinc", "champion").version
    records = pipeline["root"] / ".slowfast" / "runs"
    moved = pipeline["root"] / "runs-elsewhere"
    shutil.move(records, moved)
    try:
        compare_flow(root=str(pipeline["root"]))
    finally:
        shutil.move(moved, records)
    assert client.get_model_version_by_alias("slowfast-tiny-classinc", "champion").version == before
    results = pipeline["root"] / "results"
    assert "seconds_per_window" not in (results / "compare.json").read_text()  # what DVC hashes: no timings
    assert "seconds" not in (results / "methods" / "finetune" / "seed0" / "metrics.json").read_text()
