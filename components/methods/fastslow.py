"""fastslow: paired fast and slow weights (after FSCL, Wang et al. 2021, and Reptile).

Each window, the fast weights start from the slow ones and learn the window with a penalty
strength/2 * ||fast - slow||^2 that keeps them near the slow weights. Consolidation is a
Reptile-style step of the slow weights towards the fast ones:
slow += beta * (fast - slow). The slow model serves.
"""

from __future__ import annotations

import copy

import torch
from pydantic import Field

from components.data.loading import Window
from components.methods.base import Method, MethodConfig, log_range, linear_range
from components.methods.losses import quadratic_penalty


class FastSlowConfig(MethodConfig):
    beta: float = Field(0.5, gt=0, le=1, description="step size of the slow weights towards the fast ones")
    strength: float = Field(1.0, ge=0, description="penalty keeping the fast weights near the slow ones")


class FastSlow(Method):
    name = "fastslow"
    search_space = {"lr": log_range(1e-4, 5e-2), "beta": linear_range(0.1, 1.0), "strength": log_range(0.01, 10.0)}
    Config = FastSlowConfig

    def adapt(self, window: Window) -> torch.nn.Module:
        """Fast step: a copy of the slow weights learns the window under the proximity penalty."""
        c = self.config
        fast = copy.deepcopy(self.slow)
        anchor = {k: v.detach() for k, v in self.slow.named_parameters()}
        ones = {k: torch.ones_like(v) for k, v in anchor.items()}
        base_loss = self.window_loss(window)
        self._fast_losses = self.fit(
            fast, window.x_train, window.y_train,
            loss_fn=lambda m, x, y: base_loss(m, x, y) + c.strength / 2 * quadratic_penalty(m, anchor, ones),
        )
        return fast

    @torch.no_grad()
    def consolidate(self, fast: torch.nn.Module) -> None:
        """slow += beta * (fast - slow), for every parameter."""
        fast_params = dict(fast.named_parameters())
        for name, slow_param in self.slow.named_parameters():
            slow_param.add_(self.config.beta * (fast_params[name] - slow_param))

    def absorb(self, window: Window) -> dict[str, list[float]]:
        self.consolidate(self.adapt(window))
        return {"train": self._fast_losses}

    def fast_state_bytes(self) -> int:
        return self.slow_bytes()  # the fast weights: a copy of the slow ones
