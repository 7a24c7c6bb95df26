"""finetune: all weights, one learning rate, window data only. The lower bound."""

from __future__ import annotations

from components.data.loading import Window
from components.methods import register
from components.methods.base import Method, WindowReport
from components.training import train


@register
class Finetune(Method):
    name = "finetune"

    def learn_window(self, window: Window) -> WindowReport:
        c = self.config
        losses = train(
            self.slow, window.x_train, window.y_train,
            epochs=c.epochs, lr=c.lr, batch_size=c.batch_size, generator=self.context.generator,
            loss_fn=self.window_loss(window),
        )
        self.windows_learned.append(window.index)
        return WindowReport({"train": losses}, samples_seen=c.epochs * len(window.y_train))
