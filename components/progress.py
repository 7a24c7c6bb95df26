"""Where a method's run over the stream stands, on disk, so a killed run resumes.

One `progress.json` per method and seed beside its per-window checkpoints. It is rewritten
atomically after each step, in this order for window k:

1. the method's state after window k (`window-000k.pt`), written atomically;
2. the window's record (accuracies, timings, continual points) with `logged: false`;
3. the window's metrics sent to the tracking store;
4. `logged: true`.

A run killed anywhere resumes at the first window without a record; a record that was
never marked logged is logged by the run that resumes (into its own tracking run), so
every window's metrics reach the store once. The fingerprint names everything the
results depend on: a run with other params, data or slow model starts over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from components.checkpoint import save_json

CODE_ROOT = Path(__file__).resolve().parents[1]

PROGRESS_FILE = "progress.json"


def fingerprint(*parts: Any) -> str:
    """sha256 of the parts' canonical JSON (pydantic dumps, hashes, seeds)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@lru_cache(maxsize=None)
def stage_code_digest(stage: str, code_root: Path = CODE_ROOT) -> str:
    """sha256 over the Python files a DVC stage lists as deps (dvc.yaml; tests/test_dvc_deps.py
    checks that they cover the stage's import closure): what the stage's code is, so a result
    is kept only when the code that made it is unchanged too."""
    stages = yaml.safe_load((code_root / "dvc.yaml").read_text())["stages"]
    digest = hashlib.sha256()
    for dep in sorted(stages[stage].get("deps", [])):
        path = code_root / dep
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.suffix == ".py" else []
        for file in files:
            digest.update(file.relative_to(code_root).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


@dataclass
class Progress:
    fingerprint: str
    run_id: str
    baseline: list[float]
    windows: list[dict[str, Any]] = field(default_factory=list)  # one record per finished window, in order
    complete: bool = False
    resumed_from: list[str] = field(default_factory=list)  # tracking runs this one took over from
    record: dict[str, Any] | None = None  # the seed's summary, once complete
    flow_id: str = ""  # the flow over all seeds this run belongs to (tasks/stream.py flow markers)

    @property
    def next_window(self) -> int:
        return len(self.windows) + 1

    def unlogged(self) -> list[dict[str, Any]]:
        return [w for w in self.windows if not w.get("logged")]


def progress_path(directory: Path) -> Path:
    return Path(directory) / PROGRESS_FILE


def load_progress(directory: Path) -> Progress | None:
    path = progress_path(directory)
    if not path.is_file():
        return None
    return Progress(**json.loads(path.read_text()))


def save_progress(directory: Path, progress: Progress) -> None:
    save_json(progress.__dict__, progress_path(directory))


def resumable(previous: Progress | None, current_fingerprint: str) -> bool:
    """A previous, unfinished run of the same work: pick it up instead of starting over."""
    return previous is not None and not previous.complete and previous.fingerprint == current_fingerprint
