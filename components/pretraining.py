"""The slow model's own training: from scratch on window 0 (the pretrain split), or on
every window so far (the live loop's weekly `pretrain-slow`)."""

from __future__ import annotations

import torch

from components.config import Params
from components.data.loading import Stream
from components.models import SlowNet, build_model
from components.runtime import configure_torch
from components.training import train


def pretrain_slow_model(params: Params, stream: Stream) -> tuple[SlowNet, list[float]]:
    """A fresh slow model trained on window 0, torch seeded with params' `seed`."""
    return train_slow_model(params, stream, [0], configure_torch(params.threads, params.seed))


def train_slow_model(
    params: Params, stream: Stream, windows: list[int], generator: torch.Generator
) -> tuple[SlowNet, list[float]]:
    """A fresh slow model trained jointly on the training rows of `windows`."""
    parts = [stream.window(k) for k in windows]
    x = torch.cat([w.x_train for w in parts]) if len(parts) > 1 else parts[0].x_train
    y = torch.cat([w.y_train for w in parts]) if len(parts) > 1 else parts[0].y_train
    model = build_model(params.model, stream.manifest.num_features, stream.num_classes).to(stream.device)
    p = params.pretrain
    losses = train(
        model, x, y, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, generator=generator, weight_decay=p.weight_decay
    )
    return model, losses
