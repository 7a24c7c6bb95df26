"""The method library: each method is one module that registers itself by name.

Adding a method means one file here (a `Method` subclass with its `Config`) and one block
under `methods:` in params.yaml.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from components.config import validate_model
from components.data.loading import Stream
from components.errors import ParamsError
from components.methods.base import Method, MethodConfig, MethodContext, WindowReport
from components.models import SlowNet

REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    REGISTRY[cls.name] = cls
    return cls


def method_type(entry: str, raw: dict[str, Any]) -> type[Method]:
    kind = (raw or {}).get("method") or entry
    if kind not in REGISTRY:
        raise ParamsError(
            f"params.yaml: methods.{entry}: unknown method '{kind}'; known methods: {sorted(REGISTRY)}"
        )
    return REGISTRY[kind]


def parse_method_config(entry: str, raw: dict[str, Any] | None) -> MethodConfig:
    cls = method_type(entry, raw or {})
    return validate_model(cls.Config, raw or {}, "params.yaml", f"methods.{entry}")  # type: ignore[return-value]


def entry_config(methods: dict[str, Any], entry: str) -> dict[str, Any]:
    """The raw block of one entry under `methods:`, or a one-line error listing the entries."""
    if entry not in methods:
        raise ParamsError(f"params.yaml: methods: no entry '{entry}'; entries: {sorted(methods)}")
    return methods[entry] or {}


def build_method(entry: str, raw: dict[str, Any] | None, slow: SlowNet, context: MethodContext) -> Method:
    cls = method_type(entry, raw or {})
    return cls(slow, parse_method_config(entry, raw), context)


def _register_all() -> None:
    """Import every module of this package: each registers its method, so adding a method
    needs no edit here."""
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


_register_all()

__all__ = ["REGISTRY", "Method", "MethodConfig", "MethodContext", "Stream", "WindowReport", "build_method", "entry_config", "register"]
