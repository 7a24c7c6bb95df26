"""Task: gather every method's summary, write metrics and plot data, crown the champion,
and publish the comparison to MLflow (a `comparison` run) and Prefect (artifacts).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mlflow.exceptions import MlflowException
from prefect import task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from components.checkpoint import save_json
from components.comparison import (
    COLUMNS, HEADERS, HEADLINE, champions, markdown_table, rank_methods, shown_columns, table_rows, tuning_comparison,
    tuning_markdown,
)
from components.config import load_params
from components.workspace import with_tuned_entries
from components.methods import entry_config, method_type
from components.errors import SlowfastError
from components.plots import accuracy_heatmap, continual_curves, headline_bars, read_continual_csv
from components.layout import REPO_ROOT, Layout
from adapters import mlflow_store as tracking

BARS = ["acc", "bwt", "forgetting", "wc_acc"]


def _load_summaries(layout: Layout, methods: list[str]) -> dict[str, dict]:
    summaries = {}
    for name in methods:
        path = layout.method_results(name) / "metrics.json"
        if not path.is_file():
            raise SlowfastError(f"{path}: missing; run the stream stage for '{name}' (`dvc repro stream`)")
        summaries[name] = json.loads(path.read_text())
    return summaries


def _write_plot_data(layout: Layout, summaries: dict[str, dict], order: list[str]) -> Path:
    """results/plots/: headline.csv (the table's means, for other tools) and figures/, the
    PNGs that `dvc plots show` renders (dvc.yaml `plots:`). Images, not Vega specs: DVC's
    HTML loads Vega from a CDN, so offline its charts render as nothing."""
    plots = layout.plots
    shutil.rmtree(plots, ignore_errors=True)
    plots.mkdir(parents=True)
    lines = ["method," + ",".join(COLUMNS)]
    lines += [f"{n}," + ",".join(f"{summaries[n]['mean'][c]:.6f}" for c in COLUMNS) for n in order]
    (plots / "headline.csv").write_text("\n".join(lines) + "\n")
    return plots


def _model_version(layout: Layout, name: str, summary: dict) -> str:
    """The registry version of a method's first seed: from this checkout's run record, or
    (a fresh clone whose results came from DVC) the version tagged with that seed's
    fingerprint in the store."""
    method = summary["method"]
    try:
        version = json.loads(layout.method_record(method).read_text()).get("model_version")
    except (OSError, ValueError):
        version = None
    if version:
        return str(version)
    fingerprint = summary["fingerprints"][str(summary["seeds"][0])]
    found = tracking.find_model_version(name, {"fingerprint": fingerprint})
    if found is None:
        raise SlowfastError(
            f"MLflow store {tracking.tracking_uri()}: no version of '{name}' holds {method}'s model for these inputs; "
            f"remove results/methods/{method} and run `dvc repro` to train and register it"
        )
    return found


def _write_headline_metrics(layout: Layout, summaries: dict[str, dict], order: list[str]) -> None:
    """results/metrics/<method>.json, DVC's metrics: a few means per method, so `dvc metrics
    show` prints one short row per method and `dvc exp show --only-changed` the methods a
    change moved (stds, fast-state size and the matrix stay in compare.json and results/methods)."""
    shutil.rmtree(layout.headline_metrics, ignore_errors=True)
    for name in order:
        save_json({c: round(summaries[name]["mean"][c], 4) for c in HEADLINE}, layout.headline_metrics / f"{name}.json")


def _tuning_section(layout: Layout, summaries: dict[str, dict], metric: str, stream: str) -> str:
    """results/tuning_comparison.json and compare.md's "Defaults vs tuned" section (no rows
    and no section when nothing was tuned)."""
    chosen = json.loads(layout.chosen_configs.read_text())["methods"] if layout.chosen_configs.is_file() else {}
    tuned = {entry: f"{entry}-tuned" for entry in chosen if f"{entry}-tuned" in summaries}
    rows = tuning_comparison(summaries, tuned, metric) if tuned else []
    save_json({"metric": metric, "rows": rows, "chosen": {e: chosen[e]["config"] for e in tuned}},
              layout.tuning_comparison, sort_keys=False)
    if not tuned:
        return ""
    tuning_stream = next(iter(chosen.values()))["tuning_stream"]
    moved = [r["method"] for r in rows if r["default_rank"] != r["tuned_rank"]]
    return ("\n## Defaults vs tuned (knobs chosen on the tuning stream)\n\n"
            + tuning_markdown(rows, metric, stream, tuning_stream, {e: chosen[e]["trials"] for e in tuned})
            + f"Rank changed: {', '.join(moved) if moved else 'none'}.\n")


def _version_description(method: str, summary: dict, metric: str, alias: str, stream: str) -> str:
    mean, std = summary["mean"], summary["std"]
    figures = ", ".join(f"{c} {mean[c]:.3f} ± {std[c]:.3f}" for c in HEADLINE)
    return (f"{method} on {stream} ({alias} by {metric}; seed {summary['seeds'][0]}'s model). "
            f"Over seeds {summary['seeds']}: {figures}. Input: float32 rows of the stream's features; "
            "output: class probabilities (README 'Serving').")


@task(name="compare-methods", cache_policy=NO_CACHE)
def compare(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    params = with_tuned_entries(load_params(Path(root) / params_path), Path(root), params_path)
    layout = Layout(Path(root), params.stream.name)
    summaries = _load_summaries(layout, list(params.methods))
    metric = params.compare.champion_metric
    order = rank_methods({n: s["mean"] for n, s in summaries.items()}, metric)
    references = {n: method_type(n, entry_config(params.methods, n)).reference for n in order}
    crowned = champions(order, references)
    table = markdown_table(summaries, order, references)
    seeds = summaries[order[0]]["seeds"]

    metrics = {
        n: {c: summaries[n]["mean"][c] for c in COLUMNS}
        | {f"{c}_std": summaries[n]["std"][c] for c in COLUMNS}
        | {"n_seeds": len(summaries[n]["seeds"]), "reference": references[n]}
        for n in order
    }
    save_json(metrics, layout.compare_json, sort_keys=False)
    _write_headline_metrics(layout, summaries, order)
    note = (f"Methods on `{params.stream.name}`, best {metric} first; mean ± std over seeds {seeds}. "
            f"Champion: {crowned[0]}.\n\n")
    layout.compare_md.write_text(note + table + _tuning_section(layout, summaries, metric, params.stream.name))
    plots = _write_plot_data(layout, summaries, order)

    name = tracking.registered_model_name(params.stream.name)
    try:
        tracking.crown_versions(name, [
            (alias, _model_version(layout, name, summaries[method]),
             _version_description(method, summaries[method], metric, alias, params.stream.name),
             {column: f"{summaries[method]['mean'][column]:.4f}" for column in HEADLINE})
            for alias, method in zip(("champion", "challenger"), crowned)])
    except MlflowException as error:
        raise SlowfastError(
            f"MLflow store {tracking.tracking_uri()}: cannot set aliases on '{name}' ({error.message.splitlines()[0]}); "
            "the store may not hold these runs: `dvc repro --force` re-creates them"
        ) from None

    run_id = tracking.start_run(
        params.stream.name, "comparison",
        tags={"phase": "compare", "champion": crowned[0], "champion_metric": metric,
              "stream_hash": summaries[order[0]]["stream_hash"]},
    )
    figures = plots / "figures"
    figures.mkdir()
    for method in order:
        accuracy_heatmap(summaries[method]["matrix_mean"], f"{method} (mean over seeds)",
                         figures / f"heatmap_{method}.png")
    curves = {
        m: read_continual_csv(layout.seed_results(m, summaries[m]["seeds"][0]) / "continual.csv") for m in order
    }
    continual_curves(curves, figures / "continual_accuracy.png")
    headline_bars({m: summaries[m] for m in order}, BARS, figures / "headline_metrics.png")
    tracking.log_text(run_id, table, "comparison.md")
    tracking.log_artifact(run_id, plots / "headline.csv")
    tracking.log_artifact(run_id, layout.compare_json)
    for figure in sorted(figures.iterdir()):
        tracking.log_artifact(run_id, figure, "figures")
    tracking.end_run(run_id)

    columns, _ = shown_columns(summaries)
    headers = ["method"] + [HEADERS.get(col, col) for col in columns]
    create_table_artifact(
        key="slowfast-comparison",
        table=[dict(zip(headers, row)) for row in table_rows(summaries, order, columns=columns, references=references)],
        description=f"{params.stream.name}: best {metric} first; champion {crowned[0]} ((ref): reference, never champion)",
    )
    experiment = tracking.experiment_id(params.stream.name)
    create_link_artifact(
        key="slowfast-comparison-run",
        link=f"{params.tracking.ui_url.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}",
        link_text=f"MLflow comparison run ({params.stream.name})",
    )
    return {"order": order, "champions": crowned, "summaries": summaries, "metric": metric, "run_id": run_id}
