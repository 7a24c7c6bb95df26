"""Continual evaluation: accuracy on fixed subsets of every seen window, every k steps.

Evaluating only at the end of each window hides the forgetting that happens inside it (the
stability gap, De Lange et al. 2023). The evaluator hooks into the training loop through
`MethodContext.on_step` and records the accuracy of the model being trained (for `lora`
the slow model plus its adapter, for `distill` the fast copy and then the student) on a
seeded subset of each seen window's test rows. Subsets are fixed for the whole run, so
every point of a curve measures the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from components.data.loading import Stream
from components.runtime import window_seed
from components.training import accuracy, predict_logits


def evaluate_windows(model: nn.Module, stream: Stream) -> list[float]:
    """Accuracy on every window's test rows (seen and not yet seen)."""
    return [accuracy(model, x, y) for x, y in stream.test_sets()]


@dataclass(frozen=True)
class EvalPoint:
    step: int  # global optimizer step over the whole stream
    window: int  # the window being learned
    accuracies: tuple[float, ...]  # on windows 0..window

    @property
    def old_accuracy(self) -> float | None:
        """Mean accuracy on the windows learned before this one (None during window 0)."""
        old = self.accuracies[: self.window]
        return sum(old) / len(old) if old else None

    def as_dict(self) -> dict:
        return {"step": self.step, "window": self.window, "accuracies": list(self.accuracies)}

    @classmethod
    def from_dict(cls, data: dict) -> "EvalPoint":
        return cls(data["step"], data["window"], tuple(data["accuracies"]))


@dataclass
class ContinualEvaluator:
    stream: Stream
    every: int  # evaluate every `every` steps; 0 = only at window start and end
    subset: int  # test rows per window
    seed: int
    step: int = 0
    window: int = 0
    prequential: bool = False  # also score each first-epoch batch before training on it
    points: list[EvalPoint] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._subsets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._joined: tuple[int, torch.Tensor, torch.Tensor, list[int]] | None = None
        self._prequential = [0, 0]  # correct, seen in the current window

    def _rows(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index not in self._subsets:
            w = self.stream.window(index)
            order = torch.randperm(len(w.y_test), generator=torch.Generator().manual_seed(window_seed(self.seed, index)))
            keep = order[: self.subset].sort().values.to(w.x_test.device)
            self._subsets[index] = (w.x_test[keep], w.y_test[keep])
        return self._subsets[index]

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """All seen windows' rows as one batch (one forward pass per point, not one per window)."""
        if self._joined is None or self._joined[0] != self.window:
            parts = [self._rows(j) for j in range(self.window + 1)]
            x = torch.cat([p[0] for p in parts])
            y = torch.cat([p[1] for p in parts])
            self._joined = (self.window, x, y, [len(p[1]) for p in parts])
        return self._joined[1], self._joined[2], self._joined[3]

    def record(self, model: nn.Module) -> EvalPoint:
        if self.points and self.points[-1].step == self.step and self.points[-1].window == self.window:
            return self.points[-1]
        x, y, sizes = self._batch()
        correct = (predict_logits(model, x).argmax(dim=1) == y).long()
        counts = torch.stack([chunk.sum() for chunk in correct.split(sizes)]).tolist()  # one device sync
        accs = tuple(c / n for c, n in zip(counts, sizes))  # exact in float64, not float32 noise
        point = EvalPoint(self.step, self.window, accs)
        self.points.append(point)
        return point

    def start_window(self, index: int, model: nn.Module) -> None:
        """The pre-window point: what the model knows before it sees window `index`."""
        self.window = index
        self._prequential = [0, 0]
        self.record(model)

    def before_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> None:
        """Test-then-train: score a batch the first time it arrives, before the step on it."""
        if self.prequential and epoch == 0:
            self._prequential[0] += int((predict_logits(model, x).argmax(dim=1) == y).sum())
            self._prequential[1] += len(y)

    @property
    def prequential_accuracy(self) -> float | None:
        """Prequential accuracy over the current window's first pass (None if not measured)."""
        correct, seen = self._prequential
        return correct / seen if seen else None

    def on_step(self, model: nn.Module) -> None:
        self.step += 1
        if self.every and self.step % self.every == 0:
            self.record(model)

    def end_window(self, model: nn.Module) -> None:
        """The point after consolidation: the model that will serve until the next window."""
        if self.points and self.points[-1].step == self.step:
            self.points.pop()  # replace a same-step point by the consolidated model's
        self.record(model)
