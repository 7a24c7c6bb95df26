"""ewc and l2: finetune plus a quadratic penalty that pulls the weights towards where they
were at the end of the previous window (the anchor).

penalty = strength / 2 * sum_i F_i (theta_i - anchor_i)^2

`l2` uses F_i = 1 (plain L2 towards the anchor). `ewc` uses the diagonal Fisher
information (Kirkpatrick et al. 2017): the mean over samples of the squared gradient of the
log-likelihood of the true label, computed per sample with torch.func. Fisher terms add up
over windows (decayed by `fisher_decay`, "online EWC"), starting with the pretrain split
that the slow model learned first.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.func import functional_call, grad, vmap

from components.data.loading import Window
from components.methods.base import Method, MethodConfig, log_range
from components.methods.losses import quadratic_penalty


class PenaltyConfig(MethodConfig):
    strength: float = Field(1.0, ge=0, description="lambda: weight of the penalty")


class EwcConfig(PenaltyConfig):
    strength: float = Field(1000.0, ge=0)
    fisher_decay: float = Field(1.0, ge=0, le=1, description="gamma: weight of older Fisher terms")
    fisher_samples: int = Field(1000, ge=1, description="rows per window used to estimate the Fisher")


def diagonal_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 256) -> dict[str, torch.Tensor]:
    """Mean over rows of the squared per-sample gradient of log p(y | x)."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def nll(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_sample = vmap(grad(nll), in_dims=(None, 0, 0))
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    was_training = model.training
    model.eval()
    for xs, ys in zip(x.split(chunk), y.split(chunk)):
        for k, g in per_sample(params, xs, ys).items():
            fisher[k] += (g**2).sum(0)
    model.train(was_training)
    return {k: v / len(y) for k, v in fisher.items()}


class _Anchored(Method):
    """Finetune with a penalty towards the anchor; subclasses say how important each weight is."""

    state_attributes = ("anchor", "importance")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.anchor: dict[str, torch.Tensor] = {}
        self.importance: dict[str, torch.Tensor] = {}

    def update_importance(self, window: Window) -> None:
        raise NotImplementedError

    def penalty(self, model: nn.Module) -> torch.Tensor:
        if not self.anchor:
            return next(model.parameters()).new_zeros(())
        return self.config.strength / 2 * quadratic_penalty(model, self.anchor, self.importance)

    def absorb(self, window: Window) -> dict[str, list[float]]:
        if not self.anchor:  # the slow model's own knowledge is the first thing to protect
            self.set_anchor(self.context.stream.window(0))
        base_loss = self.window_loss(window)
        losses = self.fit(
            self.slow, window.x_train, window.y_train,
            loss_fn=lambda model, x, y: base_loss(model, x, y) + self.penalty(model),
        )
        self.set_anchor(window)
        return {"train": losses}

    def set_anchor(self, window: Window) -> None:
        self.update_importance(window)
        self.anchor = {k: v.detach().clone() for k, v in self.slow.named_parameters()}


class L2(_Anchored):
    name = "l2"
    search_space = {"lr": log_range(1e-4, 5e-2), "strength": log_range(0.01, 100.0)}
    Config = PenaltyConfig

    def update_importance(self, window: Window) -> None:
        self.importance = {k: torch.ones_like(v) for k, v in self.slow.named_parameters()}


class Ewc(_Anchored):
    name = "ewc"
    search_space = {"lr": log_range(1e-4, 5e-2), "strength": log_range(1.0, 1e5)}
    Config = EwcConfig

    def update_importance(self, window: Window) -> None:
        n = min(self.config.fisher_samples, len(window.y_train))
        rows = torch.randperm(len(window.y_train), generator=self.context.generator)[:n].to(window.x_train.device)
        fresh = diagonal_fisher(self.slow, window.x_train[rows], window.y_train[rows])
        gamma = self.config.fisher_decay
        self.importance = {k: gamma * self.importance[k] + v if self.importance else v for k, v in fresh.items()}
