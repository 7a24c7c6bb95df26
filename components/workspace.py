"""What a unit of work reads, loaded once per process: params, every path, device, stream.

Opening a workspace validates every block under `methods:` too, so a typo in any method
ends the first training stage in one line, before anything trains.

A flow hands its tasks small, typed, serializable values (a `Unit`, paths as strings); each
task opens the workspace with `open_workspace`, which parses params.yaml and reads the
stream once per process (cached on the files' contents and stat), not once per window.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from components.config import Params, load_params
from components.data.loading import Stream
from components.data.stream_io import MANIFEST
from components.errors import ParamsError
from components.layout import REPO_ROOT, Layout
from components.runtime import pick_device, window_seed

__all__ = ["REPO_ROOT", "Layout", "Unit", "Workspace", "open_workspace", "window_seed"]


@dataclass(frozen=True)
class Unit:
    """One method entry x one seed over the stream: what a flow hands a task."""

    entry: str
    seed: int
    params_path: str = "params.yaml"
    root: str = "."


@dataclass
class Workspace:
    params: Params
    layout: Layout
    device: torch.device = field(default=torch.device("cpu"))
    manifest_stamp: tuple = ()  # the stream manifest's stat when opened: a new prepare reopens

    @cached_property
    def stream(self) -> Stream:
        return Stream(self.layout.stream_dir, self.device)


_OPEN: dict[tuple, Workspace] = {}


def _stamp(path: Path) -> tuple:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ()
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def with_tuned_entries(params: Params, root: Path, source: str = "params.yaml") -> Params:
    """`methods:` plus `<entry>-tuned` for each entry the tune stage chose a configuration
    for (results/tune/chosen.json): the entry's block with the chosen knobs. A choice made
    for another block than the current one is one line: the tune stage must run first."""
    path = Layout(root, params.stream.name).chosen_configs
    if not path.is_file():
        return params
    try:
        chosen = json.loads(path.read_text())["methods"]
    except (ValueError, KeyError, TypeError):
        raise ParamsError(f"{path}: not the tune stage's output (expected a 'methods' mapping); run `dvc repro tune`") from None
    methods = dict(params.methods)
    for entry, choice in chosen.items():
        name = f"{entry}-tuned"
        if name in params.methods:
            raise ParamsError(f"{source}: methods.{name}: this name is the tune stage's evaluated entry for "
                              f"'{entry}'; rename the entry")
        if params.methods.get(entry) != choice["base"]:
            raise ParamsError(f"{path}: chosen for another methods.{entry} block than {source}'s; run the tune "
                              "stage first (`dvc repro` does)")
        methods[name] = {**choice["base"], "method": choice["method"], **choice["config"]}
    return params.model_copy(update={"methods": methods})


def open_workspace(params_path: Path | str = "params.yaml", root: Path | str = ".", tuned: bool = True) -> Workspace:
    """The workspace of `root` with `params_path` (relative to root), reused while neither
    the params file, the tune stage's choices nor the stream's manifest changed. `tuned`:
    with the tune stage's `-tuned` entries; a stage that runs before it (pretrain) opens
    it without them, so a choice made for an edited method block does not stop that stage."""
    root = Path(root)
    path = root / params_path
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    chosen = root / "results" / "tune" / "chosen.json"
    key = (str(root.resolve()), str(params_path), digest, _stamp(chosen) if tuned else None, tuned)
    workspace = _OPEN.get(key)
    if workspace is not None and workspace.manifest_stamp == _stamp(workspace.layout.stream_dir / MANIFEST):
        return workspace
    params = with_tuned_entries(load_params(path), root, str(path)) if tuned else load_params(path)
    from components.methods import validate_entries  # here: the method registry imports this module

    validate_entries(params.methods, str(path))
    layout = Layout(root, params.stream.name)
    workspace = Workspace(params, layout, pick_device(params.device), _stamp(layout.stream_dir / MANIFEST))
    _OPEN[key] = workspace
    return workspace
