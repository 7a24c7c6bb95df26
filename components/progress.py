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
import uuid
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from components.checkpoint import save_json
from components.layout import REPO_ROOT

# The code that computes a unit's numbers; flows/ (wiring) and adapters/ (tracking) do not,
# so editing them reruns the stage but keeps every unit's results.
COMPUTING_CODE = ("components/", "tasks/")

PROGRESS_FILE = "progress.json"


def fingerprint(*parts: Any) -> str:
    """sha256 of the parts' canonical JSON (pydantic dumps, hashes, seeds)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read once per version of the file: a stream flow asks for
    the slow model's digest for every seed of every method (checkpoints are replaced
    atomically, so a new version has a new inode)."""
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size, stat.st_ino)


@lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int, inode: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(directory: Path) -> str:
    """sha256 over the Python files under `directory` (names and bytes), "" when it is absent."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for file in sorted(directory.rglob("*.py")) if directory.is_dir() else []:
        digest.update(file.relative_to(directory).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest() if directory.is_dir() else ""


@lru_cache(maxsize=None)
def stage_code_digest(stage: str, exclude: frozenset[str] = frozenset(), code_root: Path = REPO_ROOT) -> str:
    """sha256 over the Python files a DVC stage lists as deps (dvc.yaml; tests/test_dvc_deps.py
    checks that they cover the stage's import closure) under components/ and tasks/, less
    `exclude` (repository paths, e.g. other methods' modules): the code that computes a
    unit, so a result is kept only when that code is unchanged too."""
    stages = yaml.safe_load((code_root / "dvc.yaml").read_text())["stages"]
    digest = hashlib.sha256()
    for dep in sorted(stages[stage].get("deps", [])):
        if not dep.startswith(COMPUTING_CODE):
            continue
        path = code_root / dep
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.suffix == ".py" else []
        for file in files:
            if file.relative_to(code_root).as_posix() in exclude:
                continue
            digest.update(file.relative_to(code_root).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


@dataclass
class WindowRecord:
    """One finished window of one seed: what was measured, and whether it reached the store."""

    window: int
    accuracies: list[float]  # on every window's test rows after this one was absorbed
    points: list[dict[str, Any]]  # continual-evaluation points (EvalPoint.as_dict)
    end_step: int  # the global optimizer step after this window
    summary: dict[str, float]  # the window's scalars (timings, acc_seen, acc_w<j>)
    losses: dict[str, list[float]]  # per epoch, by phase
    train_rows: int
    logged: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WindowRecord":
        return cls(**data)


@dataclass
class Progress:
    fingerprint: str
    run_id: str
    baseline: list[float]
    windows: list[WindowRecord] = field(default_factory=list)  # one record per finished window, in order
    complete: bool = False
    resumed_from: list[str] = field(default_factory=list)  # tracking runs this one took over from
    record: dict[str, Any] | None = None  # the seed's summary, once complete
    flow_id: str = ""  # the flow over all seeds this run belongs to (flow markers below)

    def __post_init__(self) -> None:
        self.windows = [w if isinstance(w, WindowRecord) else WindowRecord.from_dict(w) for w in self.windows]

    @property
    def next_window(self) -> int:
        return len(self.windows) + 1

    @property
    def end_step(self) -> int:
        """The global optimizer step the next window starts from."""
        return self.windows[-1].end_step if self.windows else 0

    def unlogged(self) -> list[WindowRecord]:
        return [w for w in self.windows if not w.logged]


def progress_path(directory: Path) -> Path:
    return Path(directory) / PROGRESS_FILE


def load_progress(directory: Path) -> Progress | None:
    path = progress_path(directory)
    if not path.is_file():
        return None
    return Progress(**json.loads(path.read_text()))


def save_progress(directory: Path, progress: Progress) -> None:
    save_json(asdict(progress), progress_path(directory))


def resumable(previous: Progress | None, current_fingerprint: str) -> bool:
    """A previous, unfinished run of the same work: pick it up instead of starting over."""
    return previous is not None and not previous.complete and previous.fingerprint == current_fingerprint


def begin_flow(marker: Path) -> str:
    """The id of a flow over all seeds of one method: the interrupted flow's when the last
    one never finished (its finished seeds are kept), else a new one. `marker` is the
    method's flow.json (whether the last flow over it finished)."""
    previous = json.loads(marker.read_text()) if marker.is_file() else {"complete": True}
    flow_id = (not previous["complete"] and previous.get("flow_id")) or uuid.uuid4().hex
    save_json({"complete": False, "flow_id": flow_id}, marker)
    return flow_id


def end_flow(marker: Path, flow_id: str) -> None:
    save_json({"complete": True, "flow_id": flow_id}, marker)


def finished_by_flow(previous: Progress | None, current_fingerprint: str, flow_id: str) -> bool:
    """A seed the interrupted flow `flow_id` finished with the same inputs: keep it."""
    return (previous is not None and previous.complete and previous.fingerprint == current_fingerprint
            and previous.record is not None and bool(flow_id) and previous.flow_id == flow_id)
