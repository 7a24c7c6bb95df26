"""lwf (Learning without Forgetting, Li & Hoiem 2016): finetune on the window while a frozen
copy of the model from before the window teaches, through temperature-softened
distillation, what it answered on the classes it already knew.
"""

from __future__ import annotations

import copy

import torch
from pydantic import Field

from components.data.loading import Window
from components.methods.base import Method, MethodConfig, log_range, linear_range
from components.methods.losses import kd_loss


class LwfConfig(MethodConfig):
    alpha: float = Field(1.0, ge=0, description="weight of the distillation term")
    temperature: float = Field(2.0, gt=0)


class Lwf(Method):
    name = "lwf"
    search_space = {"lr": log_range(1e-4, 5e-2), "alpha": log_range(0.1, 10.0), "temperature": linear_range(1.0, 4.0)}
    Config = LwfConfig

    def absorb(self, window: Window) -> dict[str, list[float]]:
        c = self.config
        teacher = copy.deepcopy(self.slow).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        old = torch.tensor(self.known_classes(), device=window.x_train.device)
        base_loss = self.window_loss(window)

        def loss(model, x, y):
            logits = model(x)
            with torch.no_grad():
                target = teacher(x)
            ce = base_loss(lambda _: logits, x, y)
            return ce + c.alpha * kd_loss(logits[:, old], target[:, old], c.temperature)

        return {"train": self.fit(self.slow, window.x_train, window.y_train, loss_fn=loss)}

    def fast_state_bytes(self) -> int:
        return self.slow_bytes()  # the teacher: a frozen copy of the model from before the window
