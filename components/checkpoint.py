"""Checkpoints written atomically and read back without unpickling arbitrary objects."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic_write(path: Path, write) -> None:
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
    _atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_state(path: Path | str) -> dict[str, Any]:
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def save_json(payload: Any, path: Path | str, sort_keys: bool = True) -> None:
    """Sorted keys by default (stable diffs); `sort_keys=False` where order means rank."""

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n")

    _atomic_write(Path(path), write)
