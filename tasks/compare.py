"""Task: gather every method's summary, write the metrics file, crown the champion."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.exceptions import MlflowException
from prefect import task
from prefect.cache_policies import NO_CACHE

from components.checkpoint import save_json
from components.comparison import COLUMNS, markdown_table, rank_methods
from components.config import load_params
from components.errors import SlowfastError
from tasks import tracking
from tasks.context import REPO_ROOT


def _load_records(root: Path, methods: list[str]) -> dict[str, dict]:
    records = {}
    for name in methods:
        path = root / "results" / "methods" / name / "metrics.json"
        if not path.is_file():
            raise SlowfastError(f"{path}: missing; run the stream stage for '{name}' (`dvc repro stream@{name}`)")
        records[name] = json.loads(path.read_text())
    return records


@task(name="compare-methods", cache_policy=NO_CACHE)
def compare(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    root_path = Path(root)
    params = load_params(root_path / params_path)
    records = _load_records(root_path, list(params.methods))
    metric = params.compare.champion_metric
    order = rank_methods(records, metric)
    table = markdown_table(records, order)

    results = root_path / "results"
    save_json({name: {c: records[name][c] for c in COLUMNS} for name in order}, results / "compare.json", sort_keys=False)
    (results / "compare.md").write_text(f"Methods on `{params.stream.name}`, best {metric} first.\n\n" + table)

    name = tracking.registered_model_name(params.stream.name)
    c = tracking.client()
    try:
        for alias, method in zip(("champion", "challenger"), order):
            c.set_registered_model_alias(name, alias, records[method]["model_version"])
    except MlflowException as error:
        raise SlowfastError(
            f"MLflow store {tracking.tracking_uri()}: cannot set aliases on '{name}' ({error.message.splitlines()[0]}); "
            "the store may not hold these runs: `dvc repro --force` re-creates them"
        ) from None
    run_id = tracking.start_run(
        params.stream.name, "comparison",
        tags={"phase": "compare", "champion": order[0], "champion_metric": metric,
              "stream_hash": records[order[0]]["stream_hash"]},
    )
    tracking.log_text(run_id, table, "comparison.md")
    tracking.log_artifact(run_id, results / "compare.json")
    tracking.end_run(run_id)
    return {"order": order, "records": records, "metric": metric, "run_id": run_id}
