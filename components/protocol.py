"""The evaluation protocol: pretrain the slow model, then absorb windows one at a time and
fill the accuracy matrix R (see components.metrics for what R means).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from components.config import Params
from components.data.loading import Stream
from components.methods.base import Method, WindowReport
from components.models import SlowNet, build_model
from components.training import accuracy, train


def evaluate_windows(model: nn.Module, stream: Stream) -> list[float]:
    """Accuracy on every window's test rows (seen and not yet seen)."""
    return [accuracy(model, x, y) for x, y in stream.test_sets()]


def pretrain_slow_model(params: Params, stream: Stream, generator: torch.Generator) -> tuple[SlowNet, list[float]]:
    """Train the slow model from scratch on window 0 (the pretrain split)."""
    return train_slow_model(params, stream, [0], generator)


def train_slow_model(
    params: Params, stream: Stream, windows: list[int], generator: torch.Generator
) -> tuple[SlowNet, list[float]]:
    """A fresh slow model trained jointly on the training rows of `windows` (the scheduled
    loop's weekly `pretrain-slow` passes every window so far)."""
    parts = [stream.window(k) for k in windows]
    x = torch.cat([w.x_train for w in parts]) if len(parts) > 1 else parts[0].x_train
    y = torch.cat([w.y_train for w in parts]) if len(parts) > 1 else parts[0].y_train
    model = build_model(params.model, stream.manifest.num_features, stream.num_classes).to(stream.device)
    p = params.pretrain
    losses = train(
        model, x, y, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, generator=generator, weight_decay=p.weight_decay
    )
    return model, losses


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
