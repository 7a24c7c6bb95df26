"""replay (ER, Chaudhry et al. 2019): finetune with a reservoir buffer of past samples mixed
into every batch. The buffer starts with the pretrain split (window 0), the slow model's own
knowledge, and takes each window's rows after the window is learned.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from pydantic import Field

from components.data.loading import Window
from components.methods import register
from components.methods.base import Method, MethodConfig, WindowReport


class ReplayConfig(MethodConfig):
    buffer_size: int = Field(500, ge=1, description="rows the buffer holds")
    class_balanced: bool = Field(False, description="evict from the largest class when full")
    replay_batch_size: int | None = Field(None, ge=1, description="replayed rows per step (default: batch_size)")


@register
class Replay(Method):
    name = "replay"
    Config = ReplayConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = self.replay_buffer(self.config.buffer_size, self.config.class_balanced)

    def learn_window(self, window: Window) -> WindowReport:
        c = self.config
        replay_n = c.replay_batch_size or c.batch_size
        window_loss = self.window_loss(window)

        def loss(model, x, y):
            rx, ry = self.buffer.sample(replay_n, self.context.generator)
            return window_loss(model, x, y) + F.cross_entropy(model(rx), ry)

        losses = self.fit(self.slow, window.x_train, window.y_train, loss_fn=loss)
        self.buffer.add(window.x_train, window.y_train, self.context.generator)
        self.windows_learned.append(window.index)
        steps_rows = c.epochs * len(window.y_train)
        return WindowReport(
            {"train": losses}, samples_seen=steps_rows + steps_rows // c.batch_size * replay_n,
            fast_state_bytes=self.buffer.nbytes(),
        )

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])
