"""joint: retrain on everything seen so far, pretrain split included. The upper bound."""

from __future__ import annotations

import torch

from components.data.loading import Window
from components.methods import register
from components.methods.base import Method, WindowReport


@register
class Joint(Method):
    name = "joint"

    def learn_window(self, window: Window) -> WindowReport:
        c = self.config
        seen = [self.context.stream.window(i) for i in (0, *self.windows_learned, window.index)]
        x = torch.cat([w.x_train for w in seen])
        y = torch.cat([w.y_train for w in seen])
        losses = self.fit(self.slow, x, y)
        self.windows_learned.append(window.index)
        # The "fast state" of joint is the whole history it must keep to retrain.
        return WindowReport({"train": losses}, samples_seen=c.epochs * len(y), fast_state_bytes=x.nbytes + y.nbytes)
