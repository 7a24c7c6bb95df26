"""distill: a fast copy learns the window, then slow + fast teach the slow model (KD).

The teacher answers with the slow model's logits for the classes the slow model already
knows and the fast copy's logits for the classes it does not (the window's new classes),
in the spirit of Renate's RepeatedDistillation. The slow model is then trained to match the
teacher's softened distribution on the window data, so it learns the new classes without
being told to push the old ones to zero as a plain finetune does.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from components.data.loading import Window
from components.methods.base import Method, MethodConfig, log_range, linear_range
from components.methods.losses import kd_loss
from components.training import predict_logits


class DistillConfig(MethodConfig):
    distill_epochs: int = Field(5, ge=1)
    distill_lr: float = Field(1e-3, gt=0)
    temperature: float = Field(2.0, gt=0)
    margin: float = Field(2.0, description="how far the new classes' teacher logits are lifted above the old")



class Distill(Method):
    name = "distill"
    search_space = {"lr": log_range(1e-4, 5e-2), "distill_lr": log_range(1e-4, 5e-2), "temperature": linear_range(1.0, 4.0), "margin": linear_range(0.0, 4.0)}
    Config = DistillConfig

    def teacher_logits(self, fast: nn.Module, window: Window) -> torch.Tensor:
        """Slow logits for known classes, fast logits for the window's new classes.

        The two models' logits live on different scales, so the fast part is shifted by one
        offset (the median gap on the window) that makes the teacher label the window's
        rows with their own classes, as the fast model alone does.
        """
        x = window.x_train
        known = torch.tensor(self.known_classes(), device=x.device)
        new = torch.tensor(sorted(set(window.classes) - set(self.known_classes())), device=x.device)
        logits = predict_logits(fast, x)
        slow_logits = predict_logits(self.slow, x)
        if len(new):
            gap = slow_logits[:, known].max(dim=1).values - logits[:, new].max(dim=1).values
            logits[:, new] += gap.median() + self.config.margin
        logits[:, known] = slow_logits[:, known]
        return logits

    def absorb(self, window: Window) -> dict[str, list[float]]:
        c = self.config
        fast = copy.deepcopy(self.slow)
        fast_losses = self.fit(fast, window.x_train, window.y_train, loss_fn=self.window_loss(window))
        # Teacher outputs are fixed for the whole distillation: compute them once.
        targets = self.teacher_logits(fast, window)
        distill_losses = self.fit(
            self.slow, window.x_train, targets, epochs=c.distill_epochs, lr=c.distill_lr,
            loss_fn=lambda model, x, t: kd_loss(model(x), t, c.temperature),
        )
        return {"fast": fast_losses, "distill": distill_losses}

    def fast_state_bytes(self) -> int:
        return self.slow_bytes()  # the fast copy that learned the window
