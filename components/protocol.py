"""The evaluation protocol: absorb windows one at a time and fill the accuracy matrix R
(see components.metrics for what R means); the slow model's own training is
components/pretraining.py, accuracy on every window components/evaluation.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from components.data.loading import Stream
from components.evaluation import evaluate_windows
from components.methods.base import Method, WindowReport


@dataclass
class WindowResult:
    window: int
    seconds: float
    report: WindowReport
    accuracies: list[float]

    @property
    def seen_accuracy(self) -> float:
        """Mean accuracy over windows 0..window: what the model has been taught so far."""
        seen = self.accuracies[: self.window + 1]
        return sum(seen) / len(seen)


def absorb_window(method: Method, stream: Stream, index: int) -> WindowResult:
    """One fast step (timed, with its consolidation), then evaluation on every window."""
    window = stream.window(index)
    if stream.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    report = method.learn_window(window)
    if stream.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return WindowResult(index, seconds, report, evaluate_windows(method.predictor(), stream))
