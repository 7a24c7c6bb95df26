"""The slow model: a small 1D CNN backbone over a linear head."""

from __future__ import annotations

import torch
from torch import nn

from components.config import ModelParams


class SlowNet(nn.Module):
    """Conv1d feature extractor + linear classifier for fixed-length 1D signals.

    `features` gives the hidden representation that methods such as SLCA or an error memory
    key on; `head` maps it to class logits.
    """

    def __init__(self, in_len: int, num_classes: int, channels: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.in_len = in_len
        self.num_classes = num_classes
        reduced = (in_len + 3) // 4
        self.backbone = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(channels * reduced, hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x.unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SlowMLP(nn.Module):
    """Two hidden layers over a flat feature vector, for tabular streams; same interface as SlowNet."""

    def __init__(self, in_len: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.in_len = in_len
        self.num_classes = num_classes
        self.backbone = nn.Sequential(nn.Linear(in_len, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(params: ModelParams, in_len: int, num_classes: int) -> nn.Module:
    if params.kind == "mlp":
        return SlowMLP(in_len, num_classes, hidden=params.hidden)
    return SlowNet(in_len, num_classes, channels=params.channels, hidden=params.hidden)


def adaptable_layers(model: nn.Module) -> list[str]:
    """Names of the Conv1d and Linear layers: the default targets for a LoRA adapter."""
    return [name for name, module in model.named_modules() if isinstance(module, (nn.Conv1d, nn.Linear))]


def state_bytes(tensors: dict[str, torch.Tensor] | list[torch.Tensor]) -> int:
    values = tensors.values() if isinstance(tensors, dict) else tensors
    return int(sum(t.numel() * t.element_size() for t in values))


class ClassProbabilities(nn.Module):
    """What the registry serves: class probabilities (each row sums to 1) from a predictor's
    logits or log-probabilities; column i is class i of the stream's manifest."""

    def __init__(self, predictor: nn.Module) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.predictor(x), dim=1)
