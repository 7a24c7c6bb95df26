"""Where things live: components/ is the science (no Prefect, no MLflow), tasks/ holds only
Prefect tasks, metrics are computed in components/ only, methods do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def _imports(path: Path) -> set[str]:
    """Every module an import statement in the file names, at any depth."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _py(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_components_import_neither_prefect_nor_mlflow():
    found = [f"{p.relative_to(REPO)}: {n}" for p in _py("components") for n in sorted(_imports(p))
             if n.split(".")[0] in ("prefect", "mlflow", "adapters", "tasks", "flows")]
    assert not found, "components/ must stay orchestration- and tracking-free: " + "; ".join(found)


def test_every_file_in_tasks_defines_prefect_tasks():
    def is_task(decorator: ast.expr) -> bool:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        return isinstance(target, ast.Name) and target.id == "task"

    without = []
    for path in _py("tasks"):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        if not any(is_task(d) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) for d in node.decorator_list):
            without.append(path.name)
    assert not without, f"tasks/ holds Prefect tasks only; no task in: {without}"


def test_no_metric_is_computed_outside_components():
    """Orchestration and tracking code passes numbers along; it never computes them."""
    found = []
    for folder, banned in (("tasks", ("numpy", "torch", "components.metrics")), ("flows", ("numpy", "torch", "components.metrics")),
                           ("adapters", ("components.metrics", "components.summary"))):
        for path in _py(folder):
            found += [f"{path.relative_to(REPO)}: {n}" for n in sorted(_imports(path)) if n.startswith(banned)]
    assert not found, "; ".join(found)


def test_methods_share_code_through_base_and_losses_only():
    from components.methods import SHARED_MODULES

    methods = REPO / "components" / "methods"
    found = []
    for path in sorted(methods.glob("*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if parts[:2] == ["components", "methods"] and len(parts) > 2 and parts[2] not in SHARED_MODULES:
                found.append(f"{path.name} imports {name}")
            if path.stem not in ("__init__", *SHARED_MODULES) and name == "components.methods":
                found.append(f"{path.name} imports the registry package")
    assert not found, "; ".join(found)


def test_every_registered_method_has_a_block_in_params_yaml_and_tiny_settings():
    import yaml

    from components.methods import REGISTRY
    from tests.conftest import TINY_PARAMS

    blocks = yaml.safe_load((REPO / "params.yaml").read_text())["methods"]
    kinds = {(raw or {}).get("method") or entry for entry, raw in blocks.items()}
    assert set(REGISTRY) <= kinds, f"methods without a params.yaml block: {sorted(set(REGISTRY) - kinds)}"
    assert set(TINY_PARAMS["methods"]) == set(REGISTRY)
