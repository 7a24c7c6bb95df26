"""The environment is pinned in one place and the rooms keep their rules."""

import re
import tomllib

from tests.conftest import REPO


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version.strip()
    return pins


def test_every_direct_dependency_is_pinned_to_the_locked_version():
    lock = _lock()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name, _, version = dep.partition("==")
        assert version, f"{dep} is not pinned"
        assert lock.get(name.lower()) == version, f"{name}: pyproject {version}, lock {lock.get(name.lower())}"
    assert lock["torch"] == "2.13.0"


def test_components_import_neither_prefect_nor_mlflow():
    pattern = re.compile(r"^\s*(import|from)\s+(prefect|mlflow)\b", re.MULTILINE)
    offenders = [p.relative_to(REPO) for p in (REPO / "components").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
