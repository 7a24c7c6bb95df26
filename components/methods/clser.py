"""clser (CLS-ER, Arani et al. 2022): a working model learns from the window and an episodic
buffer; a plastic and a stable model follow it as exponential moving averages, updated
stochastically at two rates (the plastic one more often); on replayed rows, the working
model's logits are pulled (MSE) towards those of whichever EMA model is more confident in
the true class. The stable model serves.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from components.data.loading import Window
from components.methods.base import Method, MethodConfig, log_range, linear_range


class ClsErConfig(MethodConfig):
    buffer_size: int = Field(500, ge=1)
    plastic_rate: float = Field(0.9, gt=0, le=1, description="probability of a plastic update per step")
    stable_rate: float = Field(0.5, gt=0, le=1, description="probability of a stable update per step")
    plastic_decay: float = Field(0.9, gt=0, lt=1, description="EMA decay of the plastic model")
    stable_decay: float = Field(0.97, gt=0, lt=1, description="EMA decay of the stable model")
    consistency: float = Field(0.1, ge=0, description="weight of the logit consistency loss")


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(decay).add_(s, alpha=1 - decay)


class ClsEr(Method):
    name = "clser"
    search_space = {"lr": log_range(1e-4, 5e-2), "plastic_decay": linear_range(0.5, 0.99), "stable_decay": linear_range(0.9, 0.999), "consistency": log_range(0.01, 1.0)}
    Config = ClsErConfig
    state_attributes = ("plastic", "stable", "buffer")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c = self.config
        self.plastic = copy.deepcopy(self.slow).requires_grad_(False)
        self.stable = copy.deepcopy(self.slow).requires_grad_(False)
        self.buffer = self.replay_buffer(c.buffer_size)
        # Python's RNG for the coin flips, seeded from the context so runs repeat exactly.
        self._coins = random.Random(int(torch.randint(2**31, (1,), generator=self.context.generator)))

    def consistency_targets(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per row, the logits of the EMA model with the higher softmax score on the label."""
        with torch.no_grad():
            plastic, stable = self.plastic(x), self.stable(x)
            p_score = F.softmax(plastic, 1).gather(1, y[:, None])
            s_score = F.softmax(stable, 1).gather(1, y[:, None])
            return torch.where(p_score > s_score, plastic, stable)

    def update_ema(self) -> None:
        c = self.config
        if self._coins.random() < c.plastic_rate:
            ema_update(self.plastic, self.slow, c.plastic_decay)
        if self._coins.random() < c.stable_rate:
            ema_update(self.stable, self.slow, c.stable_decay)

    def absorb(self, window: Window) -> dict[str, list[float]]:
        c = self.config
        base_loss = self.window_loss(window)

        def loss(model, x, y):
            rx, ry = self.buffer.sample(c.batch_size, self.context.generator)
            replay_logits = model(rx)
            return (
                base_loss(model, x, y)
                + F.cross_entropy(replay_logits, ry)
                + c.consistency * F.mse_loss(replay_logits, self.consistency_targets(rx, ry))
            )

        losses = self.fit(self.slow, window.x_train, window.y_train, loss_fn=loss, after_step=self.update_ema)
        self.count_samples(c.epochs * len(window.y_train))  # one replayed batch per window batch
        self.buffer.add(window.x_train, window.y_train, self.context.generator)
        return {"train": losses}

    def predictor(self) -> nn.Module:
        return self.stable

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"coins": list(self._coins.getstate()[1])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._coins.setstate((3, tuple(state["coins"]), None))
