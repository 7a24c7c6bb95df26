"""The method library: each method is one module whose `Method` subclass registers itself
by its `name` (components/methods/base.py).

Adding a method means one file here (the subclass with its `Config`) and one block under
`methods:` in params.yaml; the tests pick it up from `REGISTRY` with tiny settings derived
from its Config (tests/conftest.py). Methods share losses through `losses.py`, never by
importing one another (a method's results are kept while other methods' files change).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

import torch

from components.checkpoint import load_state
from components.config import ModelParams, validate_model
from components.data.loading import Stream
from components.errors import ParamsError
from components.layout import REPO_ROOT
from components.methods.base import REGISTRY, Knob, Method, MethodConfig, MethodContext, WindowReport
from components.models import SlowNet, build_model, missing_parts
from components.runtime import configure_torch
from components.training import BatchHook, StepHook
from components.workspace import Workspace

def method_type(entry: str, raw: dict[str, Any], source: str = "params.yaml") -> type[Method]:
    kind = (raw or {}).get("method") or entry
    if kind not in REGISTRY:
        raise ParamsError(f"{source}: methods.{entry}: unknown method '{kind}'; known methods: {sorted(REGISTRY)}")
    return REGISTRY[kind]


def parse_method_config(entry: str, raw: dict[str, Any] | None, source: str = "params.yaml") -> MethodConfig:
    cls = method_type(entry, raw or {}, source)
    return validate_model(cls.Config, raw or {}, source, f"methods.{entry}")  # type: ignore[return-value]


def entry_config(methods: dict[str, Any], entry: str) -> dict[str, Any]:
    """The raw block of one entry under `methods:`, or a one-line error listing the entries."""
    if entry not in methods:
        raise ParamsError(f"params.yaml: methods: no entry '{entry}'; entries: {sorted(methods)}")
    return methods[entry] or {}


def build_method(entry: str, raw: dict[str, Any] | None, slow: SlowNet, context: MethodContext) -> Method:
    cls = method_type(entry, raw or {})
    return cls(slow, parse_method_config(entry, raw), context)


def check_model_parts(entry: str, cls: type[Method], model: torch.nn.Module, params: ModelParams) -> None:
    """One line naming the method and what the slow model lacks, before any training."""
    missing = missing_parts(model, cls.requires)
    if missing:
        built = f"model.factory {params.factory}" if params.kind == "custom" else f"model.kind {params.kind}"
        raise ParamsError(f"params.yaml: methods.{entry}: method '{cls.name}' needs the slow model's "
                          f"{'; '.join(missing)}; the model from {built} has none")


def load_method(
    workspace: Workspace, entry: str, *, seed: int | None = None, generator: torch.Generator | None = None,
    state: dict[str, Any] | None = None, stream: Stream | None = None, slow_state: dict[str, Any] | None = None,
    untrained_slow: bool = False, config: dict[str, Any] | None = None,
    on_step: StepHook | None = None, before_step: BatchHook | None = None,
) -> Method:
    """The one way to build a method for a unit of work: torch seeded with `seed` (or the
    given `generator` used as it is), the slow model from models/slow (or `slow_state`, or
    as initialised when `untrained_slow`: tests and benchmarks of a mechanism) with its
    architecture from params, the entry's config (or `config`), then `state` when given.

    The order is part of the result: building the slow model and the method draws from
    torch's global RNG (initial weights, a LoRA adapter's A), so it is the same everywhere."""
    if (seed is None) == (generator is None):
        raise ValueError("load_method: give exactly one of seed and generator")
    p = workspace.params
    stream = stream or workspace.stream
    if generator is None:
        generator = configure_torch(p.threads, seed)
    slow = build_model(p.model, stream.manifest.num_features, stream.num_classes, workspace.layout.root)
    raw = config if config is not None else entry_config(p.methods, entry)
    check_model_parts(entry, method_type(entry, raw), slow, p.model)
    if slow_state is None and state is None and not untrained_slow:
        slow_state = load_state(workspace.layout.slow_model)
    if slow_state is not None:  # (`state` carries the slow weights it grew: no need to read them twice)
        slow.load_state_dict(slow_state)
    method = build_method(entry, raw, slow, MethodContext(stream, workspace.device, generator, on_step, before_step))
    if state is not None:
        method.load_state_dict(state)
    return method


SHARED_MODULES = ("base", "losses")  # every other module here holds methods


def method_files(kind: str) -> tuple[str, frozenset[str]]:
    """The repository path of the module that defines method `kind`, and those of every
    other method module (a unit's fingerprint leaves those out: editing one method does not
    retrain the others)."""
    own = Path(sys.modules[REGISTRY[kind].__module__].__file__).resolve()
    files = {Path(sys.modules[f"{__name__}.{m.name}"].__file__).resolve() for m in pkgutil.iter_modules(__path__)
             if m.name not in SHARED_MODULES}
    return own.relative_to(REPO_ROOT).as_posix(), frozenset(f.relative_to(REPO_ROOT).as_posix() for f in files - {own})


def validate_entries(methods: dict[str, Any], source: str = "params.yaml") -> dict[str, MethodConfig]:
    """Every block under `methods:` parsed by its method's Config: a typo in any entry is one
    line naming the entry and the key, before anything trains."""
    return {entry: parse_method_config(entry, raw, source) for entry, raw in methods.items()}


def _register_all() -> None:
    """Import every module of this package: each registers its method, so adding a method
    needs no edit here."""
    for module in pkgutil.iter_modules(__path__):
        if module.name not in SHARED_MODULES:
            importlib.import_module(f"{__name__}.{module.name}")


_register_all()

__all__ = ["REGISTRY", "Knob", "Method", "MethodConfig", "MethodContext", "Stream", "WindowReport", "build_method", "entry_config",
           "load_method", "method_files", "validate_entries"]
