"""Checkpoints written atomically and read back without unpickling arbitrary objects.
torch is imported where a tensor file is written or read, so that writing JSON stays light
(flows/_empty.py writes a stage's empty outputs before torch is imported)."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.errors import CheckpointError


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """`write(tmp)` fills a temporary file beside `path`, which then replaces `path` at once:
    a reader (or a run resumed after a kill) sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(state: dict[str, Any], path: Path | str) -> None:
    import torch

    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_state(path: Path | str) -> dict[str, Any]:
    """The tensors and plain values saved at `path`; a missing, empty, truncated or foreign
    file is one line naming it (a checkpoint is never unpickled as arbitrary objects)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found{_HINTS.get(path.name, '')}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError) as error:
        first = (str(error).strip().splitlines() or [""])[0].split(". ")[0][:120]
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({path.stat().st_size} bytes; {type(error).__name__}: {first})"
            f"{_HINTS.get(path.name, '')}"
        ) from None


# What to do about a broken file, by name.
_HINTS = {"model.pt": "; rebuild it with `dvc repro --force pretrain` (or `dvc checkout models/slow`)"}


def save_json(payload: Any, path: Path | str, sort_keys: bool = True) -> None:
    """Sorted keys by default (stable diffs); `sort_keys=False` where order means rank."""

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n")

    atomic_write(Path(path), write)
