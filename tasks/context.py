"""Shared set-up for tasks: params, device, seeded RNG and the stream, from paths only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from components.config import Params, load_params
from components.data.loading import Stream
from components.runtime import configure_torch, pick_device
from tasks import tracking

REPO_ROOT = Path(__file__).resolve().parents[1]


def state_root(root: Path, stream: str) -> Path:
    return root / ".slowfast" / "state" / stream


@dataclass
class RunContext:
    params: Params
    root: Path
    device: torch.device
    generator: torch.Generator
    stream: Stream

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def state_dir(self) -> Path:
        """Per-window checkpoints of running methods (not a DVC output; survives a crash)."""
        return state_root(self.root, self.params.stream.name)


def open_context(params_path: Path | str, root: Path | str = REPO_ROOT, seed: int | None = None) -> RunContext:
    """Params, device and the stream; torch seeded with `seed` (default: params' `seed`)."""
    root = Path(root)
    params = load_params(root / params_path)
    tracking.configure_retries(params.tracking.retry_attempts, params.tracking.retry_backoff_seconds)
    device = pick_device(params.device)
    generator = configure_torch(params.threads, params.seed if seed is None else seed)
    return RunContext(params, root, device, generator, Stream(params.stream_dir(root), device))
