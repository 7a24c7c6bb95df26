"""Replay memory: a fixed-size reservoir of past (x, y) pairs.

Written by hand rather than taken from a library: Avalanche and Mammoth buffers are tied to
their own training loops and dataset types, while this one is two tensors and a counter that
live on the training device and save with the method's state.
"""

from __future__ import annotations

import torch


class ReservoirBuffer:
    """Reservoir sampling (Vitter's algorithm R): after n items have been offered, each of
    them is in the buffer with probability capacity / n.

    With `class_balanced`, a full buffer makes room by evicting from the currently largest
    class (class-balanced reservoir sampling, Chrysakis & Moens 2020), so a class that
    arrives late still gets an equal share.
    """

    def __init__(self, capacity: int, num_features: int, device: torch.device | str = "cpu", class_balanced: bool = False):
        if capacity < 1:
            raise ValueError(f"buffer capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.class_balanced = class_balanced
        self.x = torch.zeros(capacity, num_features, device=device)
        self.y = torch.zeros(capacity, dtype=torch.long, device=device)
        self.size = 0
        self.seen = 0
        self.seen_per_class: dict[int, int] = {}

    def __len__(self) -> int:
        return self.size

    def add(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> None:
        """Offer every row of (x, y) to the buffer, in order."""
        draws = torch.rand(len(y), generator=generator).tolist()  # one uniform per offered item
        labels = y.tolist()
        for i, (u, label) in enumerate(zip(draws, labels)):
            self.seen += 1
            self.seen_per_class[label] = self.seen_per_class.get(label, 0) + 1
            slot = self._slot(u, label)
            if slot is not None:
                self.x[slot] = x[i]
                self.y[slot] = label

    def _slot(self, u: float, label: int) -> int | None:
        if self.size < self.capacity:
            self.size += 1
            return self.size - 1
        if not self.class_balanced:
            j = int(u * self.seen)  # uniform in 0..seen-1
            return j if j < self.capacity else None
        counts = torch.bincount(self.y, minlength=label + 1)
        if counts[label] < counts.max():  # the incoming class is not (one of) the largest
            members = torch.nonzero(self.y == int(counts.argmax())).flatten()
            return int(members[int(u * len(members))])
        # The incoming class is among the largest: plain reservoir sampling within its stream.
        members = torch.nonzero(self.y == label).flatten()
        j = int(u * self.seen_per_class[label])
        return int(members[j]) if j < len(members) else None

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n rows drawn uniformly with replacement."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        index = torch.randint(self.size, (n,), generator=generator).to(self.x.device)
        return self.x[index], self.y[index]

    def state_dict(self) -> dict:
        return {
            "x": self.x[: self.size].clone(), "y": self.y[: self.size].clone(), "seen": self.seen,
            "seen_per_class": {str(k): v for k, v in self.seen_per_class.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        n = len(state["y"])
        self.x[:n] = state["x"].to(self.x.device)
        self.y[:n] = state["y"].to(self.y.device)
        self.size, self.seen = n, int(state["seen"])
        self.seen_per_class = {int(k): int(v) for k, v in state["seen_per_class"].items()}

    def nbytes(self) -> int:
        return self.size * (self.x.shape[1] * self.x.element_size() + self.y.element_size())
