"""Where a method's run over the stream stands, on disk, so a killed run resumes.

Per method and seed, beside its per-window checkpoints: `progress.json` (the run, its
baseline, how many windows' metrics reached the store) and `windows.jsonl` (one line per
finished window, appended). For window k, in this order:

1. the method's state after window k (`window-000k.pt`), written atomically;
2. the window's record (accuracies, timings, continual points) appended to windows.jsonl;
3. the window's metrics sent to the tracking store (several windows at once, tasks/stream.py);
4. progress.json's `logged_windows` moved past it (rewritten atomically).

Records are appended, not rewritten with every window: rewriting them all made a
200-window unit spend two thirds of its time serializing JSON (benchmarks/parallel.py).
A line cut short by a kill mid-write is dropped on reading (that window runs again).

A run killed anywhere resumes at the first window without a record; a record that was
never marked logged is logged by the run that resumes (into its own tracking run), so
every window's metrics reach the store once. The fingerprint names everything the
results depend on: a run with other params, data or slow model starts over.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from components.checkpoint import atomic_write, save_json
from components.layout import REPO_ROOT

# The code that computes a unit's numbers; flows/ (wiring) and adapters/ (tracking) do not,
# so editing them reruns the stage but keeps every unit's results.
COMPUTING_CODE = ("components/", "tasks/")

PROGRESS_FILE = "progress.json"
WINDOWS_FILE = "windows.jsonl"


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
    # What is on disk already (set by load and save; a Progress built in code has nothing
    # there): the first `stored_windows` records, ending at byte `stored_bytes` of
    # windows.jsonl, and progress.json's text.
    stored_windows: int = field(default=0, init=False, repr=False, compare=False)
    stored_bytes: int = field(default=0, init=False, repr=False, compare=False)
    stored_header: str = field(default="", init=False, repr=False, compare=False)

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
    text = path.read_text()
    header = json.loads(text)
    if "windows" in header:  # written before windows.jsonl: records inline, each with its flag
        return Progress(**header)
    logged = header.pop("logged_windows")
    records, end = _read_windows(Path(directory) / WINDOWS_FILE, header["run_id"])
    progress = Progress(**header, windows=records)
    for record in progress.windows[:logged]:
        record.logged = True
    progress.stored_windows, progress.stored_bytes, progress.stored_header = len(records), end, text
    return progress


# Records already parsed, by file: (run id, inode, their end byte, records). A unit reads
# its progress before every window; parsing every record each time was quadratic.
_READ: dict[str, tuple[str, int, int, list[dict[str, Any]]]] = {}


def _read_windows(path: Path, run_id: str) -> tuple[list[dict[str, Any]], int]:
    """The complete records in `path` and the byte where they end. Only what was appended
    since this process last read the file is parsed: a file is appended to only by its run
    (another run, or a resumed one, replaces the file: a new inode)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return [], 0
    known = _READ.get(str(path))
    records, end = [], 0
    if known is not None and known[:2] == (run_id, stat.st_ino) and known[2] <= stat.st_size:
        records, end = list(known[3]), known[2]
    with path.open("rb") as file:
        file.seek(end)
        data = file.read()
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break  # cut short by a kill mid-write
        records.append(json.loads(line))
        end += len(line)
    _READ[str(path)] = (run_id, stat.st_ino, end, records)
    return list(records), end


def save_progress(directory: Path, progress: Progress) -> None:
    """Append the window records not on disk yet, then rewrite progress.json if it changed.
    A Progress not read from `directory` (a new or resumed run) writes every record anew."""
    directory = Path(directory)
    logged = next((k for k, w in enumerate(progress.windows) if not w.logged), len(progress.windows))
    if any(w.logged for w in progress.windows[logged:]):
        raise ValueError(f"{directory}: windows' metrics reach the store in order; window {logged + 1} was not logged")
    lines = b"".join(_record_line(w) for w in progress.windows[progress.stored_windows:])
    path = directory / WINDOWS_FILE
    if progress.stored_windows == 0:
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(lines))
        progress.stored_bytes = len(lines)
    elif lines:
        with path.open("r+b") as out:
            out.truncate(progress.stored_bytes)  # drops a line a kill cut short
            out.seek(progress.stored_bytes)
            out.write(lines)
        progress.stored_bytes += len(lines)
    progress.stored_windows = len(progress.windows)
    header = {f.name: getattr(progress, f.name) for f in fields(progress)
              if f.init and f.name != "windows"} | {"logged_windows": logged}
    text = json.dumps(header, indent=2, sort_keys=True) + "\n"
    if text != progress.stored_header:
        atomic_write(progress_path(directory), lambda tmp: Path(tmp).write_text(text))
        progress.stored_header = text


def _record_line(record: WindowRecord) -> bytes:
    data = asdict(record)
    del data["logged"]  # progress.json's logged_windows says it
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


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
