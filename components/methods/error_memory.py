"""error_memory: responsive error compensation in the style of ReLoop2 (Zhu et al. 2023).

The slow model is not touched when a window arrives. Instead, a bounded memory stores, for
rows the slow model gets wrong, a key (the slow model's normalised hidden features) and the
error (one-hot target minus predicted probabilities). At serving time a prediction is
corrected by the similarity-weighted errors of its k nearest keys:

    p(x) = softmax(slow(x)) + weight * sum_i w_i e_i,   w_i ~ exp((cos_i - 1) / temperature)

over the k nearest keys, with the weights scaled to sum to at most 1: close neighbours act as
a weighted average of their errors, far ones fade out and leave the slow model's answer.

The memory is a ring: when full, the oldest entries leave. Every `consolidate_every` windows
(0 = never) the slow model is retrained on the rows the memory holds and the memory is
cleared, since its errors describe the old slow model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from components.data.loading import Window
from components.methods import register
from components.methods.base import Method, MethodConfig, WindowReport
from components.models import SlowNet


class ErrorMemoryConfig(MethodConfig):
    capacity: int = Field(2000, ge=1, description="entries the memory holds (oldest out)")
    neighbours: int = Field(10, ge=1)
    temperature: float = Field(0.05, gt=0, description="kernel width over cosine similarity")
    weight: float = Field(1.0, ge=0, description="scale of the correction")
    only_mistakes: bool = Field(True, description="store only rows the slow model gets wrong")
    consolidate_every: int = Field(0, ge=0, description="retrain the slow model on the memory every n windows")


class ErrorMemory(nn.Module):
    """Ring buffer of (key, error, x, y) with the similarity-weighted correction."""

    def __init__(self, capacity: int, key_dim: int, num_classes: int, in_dim: int, device: torch.device) -> None:
        super().__init__()
        self.capacity = capacity
        self.register_buffer("keys", torch.zeros(capacity, key_dim, device=device))
        self.register_buffer("errors", torch.zeros(capacity, num_classes, device=device))
        self.register_buffer("x", torch.zeros(capacity, in_dim, device=device))
        self.register_buffer("y", torch.zeros(capacity, dtype=torch.long, device=device))
        self.register_buffer("center", torch.zeros(key_dim, device=device))
        self.size = 0
        self.next = 0

    def add(self, keys: torch.Tensor, errors: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(keys) > self.capacity:  # only the newest rows can stay
            keys, errors, x, y = keys[-self.capacity :], errors[-self.capacity :], x[-self.capacity :], y[-self.capacity :]
        slots = (self.next + torch.arange(len(keys), device=keys.device)) % self.capacity
        self.keys[slots], self.errors[slots], self.x[slots], self.y[slots] = keys, errors, x, y
        self.next = int((self.next + len(keys)) % self.capacity)
        self.size = min(self.capacity, self.size + len(keys))

    def key(self, features: torch.Tensor) -> torch.Tensor:
        """Keys are centred features on the unit sphere: ReLU features all share the positive
        orthant, so without centring every pair of rows looks alike (cosine near 1)."""
        return F.normalize(features - self.center, dim=1)

    def clear(self) -> None:
        self.size = 0
        self.next = 0

    def correction(self, keys: torch.Tensor, neighbours: int, temperature: float) -> torch.Tensor:
        if self.size == 0:
            return keys.new_zeros(len(keys), self.errors.shape[1])
        similarity = keys @ self.keys[: self.size].T
        top, index = similarity.topk(min(neighbours, self.size), dim=1)
        # Kernel weights that fade with distance (a far neighbour contributes nothing), made
        # to sum to at most 1 so that close neighbours act like a weighted average.
        kernel = torch.exp((top - 1.0) / temperature)
        weights = kernel / kernel.sum(1, keepdim=True).clamp_min(1.0)
        return (weights.unsqueeze(2) * self.errors[index]).sum(1)


class CorrectedModel(nn.Module):
    """The served model: slow model plus error correction; outputs log-probabilities."""

    def __init__(self, slow: SlowNet, memory: ErrorMemory, config: ErrorMemoryConfig) -> None:
        super().__init__()
        self.slow, self.memory, self.config = slow, memory, config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.slow.features(x)
        probs = F.softmax(self.slow.head(features), dim=1)
        keys = self.memory.key(features)
        c = self.config
        corrected = probs + c.weight * self.memory.correction(keys, c.neighbours, c.temperature)
        return corrected.clamp_min(1e-6).log()


@register
class ErrorMemoryMethod(Method):
    name = "error_memory"
    Config = ErrorMemoryConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c, stream = self.config, self.context.stream
        self.memory = ErrorMemory(
            c.capacity, self.slow.head.in_features, stream.num_classes, stream.manifest.num_features, self.context.device
        )

    @torch.no_grad()
    def absorb(self, window: Window) -> int:
        """Store the errors of the window's rows; no gradient step. Returns rows stored."""
        self.slow.eval()
        features = torch.cat([self.slow.features(chunk) for chunk in window.x_train.split(2048)])
        probs = F.softmax(self.slow.head(features), dim=1)
        target = F.one_hot(window.y_train, probs.shape[1]).float()
        keep = probs.argmax(1) != window.y_train if self.config.only_mistakes else torch.ones_like(window.y_train, dtype=torch.bool)
        if not self.memory.center.any():  # centre on the slow model's own data, once
            base = self.context.stream.window(0).x_train
            self.memory.center.copy_(torch.cat([self.slow.features(c) for c in base.split(2048)]).mean(0))
        keys = self.memory.key(features[keep])
        self.memory.add(keys, (target - probs)[keep], window.x_train[keep], window.y_train[keep])
        return int(keep.sum())

    def learn_window(self, window: Window) -> WindowReport:
        stored = self.absorb(window)
        self.windows_learned.append(window.index)
        losses: dict[str, list[float]] = {}
        every = self.config.consolidate_every
        if every and len(self.windows_learned) % every == 0 and self.memory.size:
            n = self.memory.size
            losses["consolidate"] = self.fit(self.slow, self.memory.x[:n].clone(), self.memory.y[:n].clone())
            self.memory.clear()
        return WindowReport(losses, samples_seen=stored, fast_state_bytes=self.fast_state_bytes())

    def fast_state_bytes(self) -> int:
        per_entry = sum(t[0].numel() * t.element_size() for t in (self.memory.keys, self.memory.errors, self.memory.x, self.memory.y))
        return self.memory.size * per_entry

    def predictor(self) -> nn.Module:
        return CorrectedModel(self.slow, self.memory, self.config)

    def state_dict(self) -> dict[str, Any]:
        n = self.memory.size
        m = self.memory
        return super().state_dict() | {
            "memory": {"keys": m.keys[:n], "errors": m.errors[:n], "x": m.x[:n], "y": m.y[:n], "next": m.next,
                       "center": m.center}
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state["memory"]
        n = len(saved["y"])
        for name in ("keys", "errors", "x", "y"):
            getattr(self.memory, name)[:n] = saved[name].to(self.context.device)
        self.memory.center.copy_(saved["center"])
        self.memory.size, self.memory.next = n, int(saved["next"])
