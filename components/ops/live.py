"""The live loop's view of one stream: its durable state, the files beside it, and how a
method is rebuilt on the base slow model for the windows that have arrived so far."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.checkpoint import load_state
from components.data.loading import Stream
from components.errors import SlowfastError
from components.methods import load_method
from components.methods.base import Method
from components.ops.state import OpsState, save_ops_state
from components.evaluation import evaluate_windows
from components.training import predict_logits
from components.workspace import Workspace


@dataclass
class Live:
    workspace: Workspace
    state: OpsState
    generator: torch.Generator  # seeded with params' `seed` when the loop's step began

    @property
    def directory(self) -> Path:
        return self.workspace.layout.ops_dir

    def base(self, digest: str | None = None) -> Path:
        """The slow model the fast state grew from, named by its digest so a new one never
        overwrites the one the state still points at."""
        return self.directory / f"base-{(digest or self.state.base_digest)[:16]}.pt"

    @property
    def champion(self) -> Path:
        return self.directory / "champion.pt"  # {"method": state or None (fresh), "base": digest}

    def fast(self, window: int) -> Path:
        return self.directory / "fast" / f"window-{window:04d}.pt"

    def view(self, windows: int) -> Stream:
        return Stream(self.workspace.stream.root, self.workspace.device, visible=windows)

    def method(
        self, state: dict[str, Any] | None, windows: int, generator_seed: int | None = None, base: str | None = None
    ) -> Method:
        """The live method on a base slow model, with `state` loaded (None: fresh), seeing
        `windows` windows. A window's training uses the generator seed the main job uses, so
        the live loop's numbers equal the main job's for the same method and seed."""
        seeding = {"seed": generator_seed} if generator_seed is not None else {"generator": self.generator}
        return load_method(self.workspace, self.state.method, state=state, stream=self.view(windows),
                           slow_state=load_state(self.base(base)), **seeding)

    def fast_state(self, window: int) -> dict[str, Any] | None:
        """The fast state after `window`; None where it starts fresh on the base model."""
        if window == self.state.fresh_from:
            return None
        path = self.fast(window)
        if not path.is_file():
            raise SlowfastError(f"{path}: checkpoint of absorbed window {window} is missing; the ops state "
                                f"{self.directory / 'state.json'} cannot resume without it")
        return load_state(path)

    def champion_method(self, windows: int) -> Method:
        saved = load_state(self.champion)
        return self.method(saved["method"], windows, base=saved["base"])

    def save(self) -> None:
        save_ops_state(self.directory, self.state)


def seen_accuracy(model: torch.nn.Module, stream: Stream) -> float:
    """Mean accuracy over the windows the view shows (those that have arrived)."""
    return float(np.mean(evaluate_windows(model, stream)))


def serving_errors(model: torch.nn.Module, stream: Stream, window: int) -> np.ndarray:
    """1.0 where the model misclassifies a training row of `window`, else 0.0: the error
    stream a drift detector watches."""
    w = stream.window(window)
    return (predict_logits(model, w.x_train).argmax(dim=1) != w.y_train).cpu().numpy().astype(float)
