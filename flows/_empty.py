"""Stages with nothing to run: `text.methods: {}` (no text stream), `tune.methods: []`
(nothing to tune) and fetch for a source that reads nothing from data/external/. Their empty outputs are written here, by the flow when it runs and, as
a stage, before anything heavy is imported (`exit_if_nothing_to_run`): importing Prefect,
MLflow and torch to write two small files cost such a stage 7-9 s of a 2-core pipeline.
Standard library and light components only: no torch, Prefect or MLflow."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from components.checkpoint import save_json
from components.config import Params
from components.layout import Layout


def no_text_stream(root: Path) -> None:
    """DVC's outputs of the text stage, empty; a model pretrained earlier stays in models/text."""
    out = root / "results" / "text"
    for name in ("compare.json", "manifest.json"):
        save_json({}, out / name)
    (out / "compare.md").write_text("No text stream: `text.methods` is empty in params.yaml.\n")
    for folder in ("methods", "figures", "metrics"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    (root / "models" / "text").mkdir(parents=True, exist_ok=True)
    print("[text] text.methods is empty: no text stream", flush=True)


def nothing_to_tune(root: Path, params: Params) -> None:
    """The tune stage's outputs with no study: every method runs with its params.yaml block."""
    layout = Layout(root, params.stream.name)
    save_json({"objective": params.tune.objective, "methods": {}}, layout.chosen_configs)
    (layout.tune_results / "trials").mkdir(parents=True, exist_ok=True)
    print("[tune] tune.methods is empty: nothing to tune; every method runs with its params.yaml block", flush=True)


def exit_if_nothing_to_run(argv: list[str], nothing: Callable[[Params], bool],
                           write: Callable[[Path, Params], None]) -> None:
    """As a stage (`argv`: its arguments): when its params leave it `nothing` to run, write
    its empty outputs and exit 0 with no flow run. A params file that does not load is left
    to the stage, which reports it in one line."""
    from adapters.fork_server import stage_params, stage_paths
    from components.errors import SlowfastError
    from components.layout import REPO_ROOT

    try:
        params = stage_params(tuple(argv))
    except SlowfastError:
        return
    if nothing(params):
        write(Path(stage_paths(argv).root or REPO_ROOT), params)
        sys.exit(0)
