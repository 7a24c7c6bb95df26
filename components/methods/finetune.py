"""finetune: all weights, one learning rate, window data only. The lower bound."""

from __future__ import annotations

from components.data.loading import Window
from components.methods import register
from components.methods.base import Method, WindowReport


@register
class Finetune(Method):
    name = "finetune"

    def learn_window(self, window: Window) -> WindowReport:
        losses = self.fit(self.slow, window.x_train, window.y_train, loss_fn=self.window_loss(window))
        self.windows_learned.append(window.index)
        return WindowReport({"train": losses}, samples_seen=self.config.epochs * len(window.y_train))
