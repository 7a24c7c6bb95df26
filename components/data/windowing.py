"""From one table of rows (features, class indices, a window id per row) to the stream's
windows: a seeded train/test split inside each window and optional standardization with
window 0's training rows (the only rows the slow model may see before the stream starts).

Every source but the class-incremental MNIST-1D one goes through here, so the rules for
empty windows and empty test splits hold the same way for all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from components.data.stream_io import WindowArrays
from components.errors import StreamError


@dataclass
class PreparedStream:
    """What a source hands to `write_stream`: windows (possibly lazy) plus manifest entries."""

    windows: Any  # Iterable[WindowArrays]
    class_names: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def split_indices(
    window_ids: np.ndarray, num_windows: int, test_fraction: float, seed: int, where: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per window, (train rows, test rows) as sorted row indices, so rows keep their order.

    The test rows are a seeded random `test_fraction` of each window (at least one, and at
    least one row left for training), the same for the same seed and window.
    """
    counts = np.bincount(window_ids, minlength=num_windows)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise StreamError(f"{where}: window {int(empty[0])} has no rows ({num_windows} windows in all)")
    order = np.argsort(window_ids, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    splits = []
    for k in range(num_windows):
        rows = order[bounds[k] : bounds[k + 1]]
        n_test = int(round(len(rows) * test_fraction))
        if n_test == 0 or n_test == len(rows):
            raise StreamError(
                f"{where}: window {k} has {len(rows)} rows, leaving no "
                f"{'test' if n_test == 0 else 'training'} rows at test_fraction {test_fraction}"
            )
        chosen = np.random.default_rng([seed, k]).permutation(len(rows))
        test = np.sort(rows[chosen[:n_test]])
        train = np.sort(rows[chosen[n_test:]])
        splits.append((train, test))
    return splits


def standardization(x_train0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per feature (std 1 where a feature is constant), in float64."""
    mean = x_train0.mean(axis=0, dtype=np.float64)
    std = x_train0.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return mean, std


def windows_from_rows(
    x: np.ndarray,
    y: np.ndarray,
    window_ids: np.ndarray,
    num_windows: int,
    class_names: list[str],
    test_fraction: float,
    seed: int,
    where: str,
    normalize: bool,
) -> PreparedStream:
    """Cut `x` [n, d] float32 and `y` [n] class indices into windows; validation happens
    here, up front, so a bad window stops the run before anything is written."""
    splits = split_indices(window_ids, num_windows, test_fraction, seed, where)
    extra: dict[str, Any] = {}
    mean = std = None
    if normalize:
        mean, std = standardization(x[splits[0][0]])
        extra["normalization"] = {"mean": mean.tolist(), "std": std.tolist(), "fitted_on": "window 0 train"}

    def scaled(rows: np.ndarray) -> np.ndarray:
        part = x[rows]
        if mean is None:
            return part
        return ((part - mean) / std).astype(np.float32)

    def generate() -> Iterator[WindowArrays]:
        for k, (train, test) in enumerate(splits):
            present = np.unique(np.concatenate([y[train], y[test]]))
            yield WindowArrays(k, [int(c) for c in present], scaled(train), y[train], scaled(test), y[test])

    return PreparedStream(generate(), class_names, extra)
