"""An example factory: a residual MLP over flat rows, with the parts every method can use.

    model:
      kind: custom
      factory: custom_models.example:residual_mlp
      kwargs: {width: 128, blocks: 2}
"""

from __future__ import annotations

import torch
from torch import nn


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualMLP(nn.Module):
    """forward(x) gives logits; features(x) the hidden vector `head` reads; `backbone` holds
    every layer before the head (what SLCA, error_memory, I-LoRA and kfpf use)."""

    def __init__(self, in_features: int, num_classes: int, width: int = 128, blocks: int = 2) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), *[Residual(width) for _ in range(blocks)])
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def residual_mlp(in_features: int, num_classes: int, width: int = 128, blocks: int = 2) -> ResidualMLP:
    return ResidualMLP(in_features, num_classes, width, blocks)
