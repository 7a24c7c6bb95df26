"""`neural_memory`: a Titans-style memory (Behrouz et al. 2025) read by the slow model and
written at test time, the slow weights frozen.

The memory M (width x hidden) is a fast linear map beside the slow model's `out_proj`: the
model reads `out_proj(h) + M h`, with the recurrent output h as the key. Its value for a key
is the slow model's surprise there: `scale` x the direction at that layer that lowers the loss
of the byte that came (`ByteLM.errors`; a gradient is a small step, so the memory
recalls a scaled one). After each segment is scored, M takes one step
on the associative recall loss 1/2 mean_t ||M k_t - v_t||^2 over the segment's positions:

    S <- momentum * S - lr * (M K - V) K^T / (n e)     (surprise with momentum)
    M <- (1 - forget) * M + S                           (forgetting gate)

with K (hidden x n) and V (width x n) the segment's keys and values, and e = mean_t ||k_t||^2
the keys' energy: the normalized delta rule (NLMS). Divided by e, the recall loss's curvature
is at most 1, so the write stays stable for lr < 2 (1 + momentum) whatever the keys' scale
(Titans makes its step data-dependent too). A linear memory (one
layer, Titans' L_M = 1) is exactly mergeable: consolidation adds `share * M` to `out_proj`.
Written here, not taken from lucidrains/titans-pytorch: that package's memory sits in a
transformer with learned key/value projections; this one must read a frozen GRU's own keys.
"""

from __future__ import annotations

import torch
from torch import nn

from components.text.fast import FastLearner, ScoringPass
from components.text.lm import ByteLM


def memory_step(memory: torch.Tensor, momentum_state: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                lr: float, momentum: float, forget: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One write: the memory and its momentum after the segment whose keys (n x hidden) and
    values (n x width) are given (the rule in the module docstring)."""
    gradient = (keys @ memory.T - values).T @ keys / len(keys)
    energy = (keys * keys).sum(dim=1).mean().clamp_min(1e-12)
    momentum_state = momentum * momentum_state - (lr / energy) * gradient
    return (1 - forget) * memory + momentum_state, momentum_state


class NeuralMemory(FastLearner):
    """`reset: document` clears the memory (and its momentum) at each document; `window`
    keeps what earlier documents of the window wrote."""

    name = "neural_memory"

    def __init__(self, slow: ByteLM, lr: float = 1.0, momentum: float = 0.7, forget: float = 0.02,
                 scale: float = 30.0, reset: str = "window") -> None:
        super().__init__(slow)
        self.lr, self.momentum, self.forget, self.scale, self.reset = lr, momentum, forget, scale, reset
        weight = slow.out_proj.weight
        self.memory = torch.zeros_like(weight)
        self.momentum_state = torch.zeros_like(weight)
        # the slow model reading the memory; the GRU's outputs it keeps are the write's keys
        self._scoring = ScoringPass(slow, lambda h: slow.read(h, self.memory))

    @property
    def model(self) -> nn.Module:
        return self._scoring

    def begin_document(self) -> None:
        if self.reset == "document":
            self.memory.zero_()
            self.momentum_state.zero_()

    def learn(self, context: torch.Tensor, segment: torch.Tensor, state: torch.Tensor | None,
              scored: torch.Tensor | None = None) -> None:
        keys, _ = self._scoring.take(len(segment), "neural_memory")
        with torch.no_grad():
            values = self.slow.errors(keys, segment)
            self.memory, self.momentum_state = memory_step(self.memory, self.momentum_state, keys, self.scale * values,
                                                           self.lr, self.momentum, self.forget)

    def merged_out_proj(self) -> torch.Tensor:
        """`out_proj`'s weight with the memory merged in (the model reads the same)."""
        return self.slow.out_proj.weight + self.memory

    def state_bytes(self) -> int:
        return 2 * self.memory.numel() * self.memory.element_size()
