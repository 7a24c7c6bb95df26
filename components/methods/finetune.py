"""finetune: all weights, one learning rate, window data only. The lower bound."""

from __future__ import annotations

from components.data.loading import Window
from components.methods.base import Method


class Finetune(Method):
    name = "finetune"
    reference = "lower bound: plain finetuning, nothing against forgetting"

    def absorb(self, window: Window) -> dict[str, list[float]]:
        return {"train": self.fit(self.slow, window.x_train, window.y_train, loss_fn=self.window_loss(window))}
