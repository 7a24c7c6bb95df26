"""joint: retrain on everything seen so far, pretrain split included. The upper bound."""

from __future__ import annotations

import torch

from components.data.loading import Window
from components.methods.base import Method


class Joint(Method):
    name = "joint"
    reference = "upper bound: retrains on every window seen so far"

    def absorb(self, window: Window) -> dict[str, list[float]]:
        seen = [self.context.stream.window(i) for i in (0, *self.windows_learned, window.index)]
        x = torch.cat([w.x_train for w in seen])
        y = torch.cat([w.y_train for w in seen])
        return {"train": self.fit(self.slow, x, y)}

    def fast_state_bytes(self) -> int:
        """The whole history joint must keep to retrain: every seen window's training rows."""
        seen = [self.context.stream.window(i) for i in (0, *self.windows_learned)]
        return sum(w.x_train.nbytes + w.y_train.nbytes for w in seen)
