"""Continual-learning metrics from an accuracy matrix.

R[i, j] is the accuracy on window j's test rows after training through window i, for
i, j = 0..T. Row 0 is the slow model before any fast step (b[j] = R[0, j]); window 0 is the
slow model's own pretrain split, so forgetting what it knew counts. Each definition is the
1/(T-1)-style average over the windows it names (shared/DESIGN.md, "Metrics"):

- ACC        = mean_j R[T, j]                                  (j = 0..T)
- BWT        = mean_{j<T} (R[T, j] - R[j, j])
- FWT        = mean_{j>=1} (R[j-1, j] - b[j])
- forgetting = mean_{j<T} (max_{l<T} R[l, j] - R[T, j])

BWT compares with the accuracy right after learning window j, forgetting with the best
accuracy ever reached on it: they differ whenever a later window raised accuracy on j.
"""

from __future__ import annotations

import numpy as np


def _check(matrix: np.ndarray) -> np.ndarray:
    r = np.asarray(matrix, dtype=float)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] < 2:
        raise ValueError(f"accuracy matrix must be square with at least 2 rows, got shape {r.shape}")
    return r


def average_accuracy(matrix: np.ndarray) -> float:
    r = _check(matrix)
    return float(r[-1].mean())


def backward_transfer(matrix: np.ndarray) -> float:
    r = _check(matrix)
    last = r.shape[0] - 1
    return float(np.mean([r[last, j] - r[j, j] for j in range(last)]))


def forward_transfer(matrix: np.ndarray) -> float:
    r = _check(matrix)
    return float(np.mean([r[j - 1, j] - r[0, j] for j in range(1, r.shape[0])]))


def forgetting(matrix: np.ndarray) -> float:
    r = _check(matrix)
    last = r.shape[0] - 1
    return float(np.mean([r[:last, j].max() - r[last, j] for j in range(last)]))


def summarize(matrix: np.ndarray) -> dict[str, float]:
    return {
        "acc": average_accuracy(matrix),
        "bwt": backward_transfer(matrix),
        "fwt": forward_transfer(matrix),
        "forgetting": forgetting(matrix),
    }
