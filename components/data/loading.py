"""A stream on disk, loaded window by window as tensors on the training device."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from components.data.stream_io import Manifest, read_manifest, read_window


@dataclass(frozen=True)
class Window:
    index: int
    classes: list[int]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


class Stream:
    """Reads a validated stream once per window and keeps the tensors for reuse."""

    def __init__(self, root: Path | str, device: torch.device | str = "cpu", visible: int | None = None) -> None:
        self.root = Path(root)
        self.device = torch.device(device)
        self.manifest: Manifest = read_manifest(self.root)
        if visible is not None and not 1 <= visible <= self.manifest.num_windows:
            raise IndexError(f"{self.root}: cannot show {visible} windows, the stream has {self.manifest.num_windows}")
        self.visible = visible
        self._cache: dict[int, Window] = {}

    @property
    def num_windows(self) -> int:
        """Windows including window 0, the slow model's pretrain split. `visible` limits the
        view to the windows that have arrived so far (scheduled operation, flows/ops.py)."""
        return self.manifest.num_windows if self.visible is None else self.visible

    @cached_property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    def window(self, index: int) -> Window:
        if index not in self._cache:
            if not 0 <= index < self.num_windows:
                raise IndexError(f"{self.root}: window {index} outside 0..{self.num_windows - 1}")
            tensors = []
            for split in ("train", "test"):
                x, y = read_window(self.root, self.manifest, split, index)
                tensors += [torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)]
            classes = list(self.manifest.windows[index]["classes"])
            self._cache[index] = Window(index, classes, *tensors)
        return self._cache[index]

    def test_sets(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(w.x_test, w.y_test) for w in map(self.window, range(self.num_windows))]
