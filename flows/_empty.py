"""Stages with nothing to run: `text.methods: {}` (no text stream) and `tune.methods: []`
(nothing to tune). Their empty outputs are written here, by the flow when it runs and, as
a stage, before anything heavy is imported (`exit_if_nothing_to_run`): importing Prefect,
MLflow and torch to write two small files cost such a stage 7-9 s of a 2-core pipeline.
Standard library and components/config only (no torch: components/checkpoint imports it)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.config import Params
from components.layout import Layout


def write_json(payload: Any, path: Path) -> None:
    """As components/checkpoint.save_json writes it (sorted keys, atomic), without its torch import."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def no_text_stream(root: Path, params: Params | None = None) -> None:
    """DVC's outputs of the text stage, empty; a model pretrained earlier stays in models/text."""
    out = root / "results" / "text"
    for name in ("compare.json", "manifest.json"):
        write_json({}, out / name)
    (out / "compare.md").write_text("No text stream: `text.methods` is empty in params.yaml.\n")
    for folder in ("methods", "figures", "metrics"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    (root / "models" / "text").mkdir(parents=True, exist_ok=True)
    print("[text] text.methods is empty: no text stream", flush=True)


def nothing_to_tune(root: Path, params: Params) -> None:
    """The tune stage's outputs with no study: every method runs with its params.yaml block."""
    layout = Layout(root, params.stream.name)
    write_json({"objective": params.tune.objective, "methods": {}}, layout.chosen_configs)
    (layout.tune_results / "trials").mkdir(parents=True, exist_ok=True)
    print("[tune] tune.methods is empty: nothing to tune; every method runs with its params.yaml block", flush=True)


def exit_if_nothing_to_run(argv: list[str], nothing: Callable[[Params], bool],
                           write: Callable[[Path, Params], None]) -> None:
    """As a stage (`argv`: its arguments): when its params leave it `nothing` to run, write
    its empty outputs and exit 0 with no flow run. A params file that does not load is left
    to the stage, which reports it in one line."""
    from adapters.fork_server import stage_paths
    from components.config import load_params
    from components.errors import SlowfastError
    from components.layout import REPO_ROOT

    paths = stage_paths(argv)
    root = Path(paths.root or REPO_ROOT)
    try:
        params = load_params(root / paths.params)
    except SlowfastError:
        return
    if nothing(params):
        write(root, params)
        sys.exit(0)
