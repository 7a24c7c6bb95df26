"""replay (ER, Chaudhry et al. 2019): finetune with a reservoir buffer of past samples mixed
into every batch. The buffer starts with the pretrain split (window 0), the slow model's own
knowledge, and takes each window's rows after the window is learned.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field

from components.data.loading import Window
from components.methods.base import Method, MethodConfig, Knob, log_range


class ReplayConfig(MethodConfig):
    buffer_size: int = Field(500, ge=1, description="rows the buffer holds")
    class_balanced: bool = Field(False, description="evict from the largest class when full")
    replay_batch_size: int | None = Field(None, ge=1, description="replayed rows per step (default: batch_size)")


class Replay(Method):
    name = "replay"
    search_space = {"lr": log_range(1e-4, 5e-2), "epochs": Knob(low=1, high=10, integer=True)}
    Config = ReplayConfig
    state_attributes = ("buffer",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = self.replay_buffer(self.config.buffer_size, self.config.class_balanced)

    def absorb(self, window: Window) -> dict[str, list[float]]:
        c = self.config
        replay_n = c.replay_batch_size or c.batch_size
        window_loss = self.window_loss(window)

        def loss(model, x, y):
            rx, ry = self.buffer.sample(replay_n, self.context.generator)
            return window_loss(model, x, y) + F.cross_entropy(model(rx), ry)

        losses = self.fit(self.slow, window.x_train, window.y_train, loss_fn=loss)
        self.count_samples(c.epochs * len(window.y_train) // c.batch_size * replay_n)  # the replayed rows
        self.buffer.add(window.x_train, window.y_train, self.context.generator)
        return {"train": losses}
