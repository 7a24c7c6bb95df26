"""What the scheduled loop has done to a stream, written atomically after every step.

`.slowfast/ops/<stream>/state.json` says which windows have arrived (with a digest of each,
so a window cannot change under the loop), which have been absorbed into the fast state,
which of those reached the tracking store, and which consolidation made the champion.
Every deployment reads it to know where to resume; running one twice on the same data
finds nothing to do.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from components.checkpoint import save_json
from components.data.stream_io import partition_path
from components.errors import SlowfastError


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def window_digest(stream_root: Path, window: int) -> str:
    """sha256 of one window's train and test partitions: its identity once ingested."""
    digest = hashlib.sha256()
    for split in ("train", "test"):
        digest.update(partition_path(Path(stream_root), split, window).read_bytes())
    return digest.hexdigest()


class Arrival(BaseModel):
    window: int
    digest: str
    at: str


class Release(BaseModel):
    """A model the loop registered: which window it has absorbed and how it scored."""

    version: str
    window: int
    acc_seen: float
    run_id: str | None = None


class Decision(BaseModel):
    at: str
    window: int
    promoted: bool
    candidate_acc: float
    champion_acc: float
    reason: str
    trigger: str = "schedule"


class OpsState(BaseModel):
    stream: str
    method: str
    seed: int
    base_digest: str  # the slow model the fast state grew from
    arrived: list[Arrival]
    fresh_from: int = 0  # the fast state starts fresh on the base model after this window
    retrained: int = 0  # last window the base slow model was trained on
    absorbed: int = 0  # last window absorbed into the fast state
    logged: int = 0  # last absorbed window whose metrics reached the tracking store
    pending_metrics: dict[int, dict[str, float]] = Field(default_factory=dict)  # absorbed, not yet logged
    gated: int = 0  # last absorbed window the challenger gate has decided on
    active_run: str | None = None  # tracking run of a fast-adapt in progress (left set if it was killed)
    challenger: Release | None = None
    champion: Release | None = None
    consolidated: int = 0  # last window the champion has absorbed
    decided: int = 0  # last window a consolidation decided on (promoted or refused)
    decisions: list[Decision] = Field(default_factory=list)

    @property
    def num_arrived(self) -> int:
        return len(self.arrived)

    def to_absorb(self) -> list[int]:
        return list(range(self.absorbed + 1, self.num_arrived))


def state_file(directory: Path) -> Path:
    return Path(directory) / "state.json"


def load_ops_state(directory: Path) -> OpsState | None:
    path = state_file(directory)
    if not path.is_file():
        return None
    try:
        return OpsState.model_validate(json.loads(path.read_text()))
    except (ValueError, TypeError) as error:
        raise SlowfastError(f"{path}: not a valid ops state ({str(error).splitlines()[0]})") from None


def save_ops_state(directory: Path, state: OpsState) -> None:
    save_json(state.model_dump(mode="json"), state_file(directory))


def check_arrivals(state: OpsState, stream_root: Path) -> None:
    """Windows already ingested must be byte-identical in the stream now on disk."""
    for arrival in state.arrived:
        try:
            current = window_digest(stream_root, arrival.window)
        except FileNotFoundError:
            current = "missing"
        if current != arrival.digest:
            raise SlowfastError(
                f"{stream_root}: window {arrival.window} changed after it was ingested ({arrival.at}); "
                "the live loop cannot absorb it twice: give the new data a new stream name"
            )


def promotion(candidate_acc: float, champion_acc: float, tolerance: float, window: int) -> tuple[bool, str]:
    """Promote unless accuracy over every seen window drops by more than `tolerance`."""
    drop = champion_acc - candidate_acc
    seen = f"windows 0..{window}"
    if drop > tolerance:
        return False, (f"accuracy over {seen} would drop from {champion_acc:.4f} to {candidate_acc:.4f} "
                       f"({drop:.4f} > tolerance {tolerance}); the champion stays")
    return True, f"accuracy over {seen}: {candidate_acc:.4f} vs champion {champion_acc:.4f} (tolerance {tolerance})"


def summary_line(state: OpsState) -> str:
    champion = state.champion.version if state.champion else "none"
    return (f"{state.stream}/{state.method}: {state.num_arrived} windows arrived, absorbed through {state.absorbed}, "
            f"champion v{champion} through window {state.consolidated}")
