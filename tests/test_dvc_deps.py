"""dvc.yaml must list every project module a stage's code can import, or editing that module
would rerun nothing (and a kept result would be stale: components/progress.py hashes the
listed files into each unit's fingerprint). No params value may reach a stage's command or
paths: DVC runs commands through a shell and deletes outputs before a stage runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from tests.conftest import REPO

PACKAGES = tuple(sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name not in ("tests", "benchmarks")))
# Packages whose __init__ imports every module in them by name at run time (the method
# registry): importing the package imports all of it.
IMPORTS_WHOLE_PACKAGE = {"components.methods"}


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path, module: str) -> set[str]:
    """Project modules named by any import in the file, at top level or inside functions."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def import_closure(module: str) -> set[Path]:
    """Files of every project module reachable from `module` (packages' __init__ included)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            prefix = ".".join(parts[:i])
            path = _module_file(prefix)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(_imported_names(path, prefix))
            if prefix in IMPORTS_WHOLE_PACKAGE:
                todo.extend(f"{prefix}.{p.stem}" for p in path.parent.glob("*.py") if p.stem != "__init__")
    return seen


def _stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_stage_lists_its_import_closure_as_deps():
    missing = []
    for name, stage in _stages().items():
        match = re.fullmatch(r"python -m ([\w.]+)", stage["cmd"])
        assert match, f"stage {name}: command {stage['cmd']!r} is not `python -m <module>`"
        deps = stage.get("deps", [])
        missing += [f"{name}: {p.relative_to(REPO)}" for p in sorted(import_closure(match.group(1))) if not _covered(p, deps)]
    assert not missing, "dvc.yaml misses deps: " + "; ".join(missing)


def test_every_listed_dep_exists():
    missing = [f"{name}: {dep}" for name, stage in _stages().items() for dep in stage.get("deps", [])
               if not (REPO / dep).exists() and not dep.startswith(("data/", "models/", "results/"))]
    assert not missing, "dvc.yaml lists deps that do not exist: " + "; ".join(missing)


def test_the_closure_follows_imports_inside_functions_and_the_method_registry():
    closure = {p.relative_to(REPO).as_posix() for p in import_closure("flows.prepare")}
    assert "components/data/table_source.py" in closure  # imported inside build_stream
    closure = {p.relative_to(REPO).as_posix() for p in import_closure("flows.stream")}
    assert "components/methods/lora.py" in closure  # registered by name, never imported by name
    assert "adapters/mlflow_store.py" in closure


def test_no_params_value_reaches_a_stage_command_or_path():
    text = (REPO / "dvc.yaml").read_text()
    assert "${" not in text, "dvc.yaml interpolates params: a value could become shell syntax or a path"
    assert "foreach" not in text


def test_a_units_code_digest_covers_computing_code_only(tmp_path):
    """Editing wiring (flows/) or tracking (adapters/) reruns the stage but keeps every
    unit; editing components/ or tasks/ retrains; another method's module is left out."""
    from components.progress import stage_code_digest

    for name in ("flows/stream.py", "adapters/mlflow_store.py", "components/summary.py", "tasks/stream.py",
                 "components/methods/lora.py", "components/methods/replay.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"stream": {"deps": [
        "flows/stream.py", "adapters/mlflow_store.py", "components/summary.py", "tasks/stream.py", "components/methods"]}}}))

    def digest() -> str:
        stage_code_digest.cache_clear()
        return stage_code_digest("stream", frozenset({"components/methods/replay.py"}), tmp_path)

    base = digest()
    for name in ("flows/stream.py", "adapters/mlflow_store.py", "components/methods/replay.py"):
        (tmp_path / name).write_text("x = 2\n")
        assert digest() == base, name
    for name in ("components/summary.py", "tasks/stream.py", "components/methods/lora.py"):
        (tmp_path / name).write_text("x = 3\n")
        assert digest() != base, name
        base = digest()
