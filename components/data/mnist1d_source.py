"""MNIST-1D, generated locally by the `mnist1d` package (no download): cut by class, or
regenerated per window under drifting corruption."""

from __future__ import annotations

import numpy as np

from components.config import DRIFT_KEYS, StreamParams
from components.data.stream_io import WindowArrays
from components.errors import ParamsError


def generate_mnist1d(
    num_samples: int, test_fraction: float, seed: int, overrides: dict[str, float] | None = None
) -> dict[str, np.ndarray]:
    """The raw MNIST-1D arrays: x/y for training and x_test/y_test, float32 and int64.

    `overrides` change the generator's corruption settings (see config.DRIFT_KEYS).
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.train_split = 1.0 - test_fraction
    args.seed = seed
    for key, value in (overrides or {}).items():
        setattr(args, key, int(value) if key == "max_translation" else float(value))
    raw = make_dataset(args)  # seeds numpy's global RNG itself; no network involved
    return {
        "x": raw["x"].astype(np.float32),
        "y": raw["y"].astype(np.int64),
        "x_test": raw["x_test"].astype(np.float32),
        "y_test": raw["y_test"].astype(np.int64),
    }


def class_incremental_windows(params: StreamParams) -> list[WindowArrays]:
    """Window 0 holds the pretrain classes; window k holds the k-th group of new classes."""
    groups = [params.pretrain_classes, *params.window_classes]
    seen: set[int] = set()
    for group in groups:
        if seen & set(group):
            raise ParamsError(f"params.yaml: stream.window_classes: class {sorted(seen & set(group))} appears twice")
        if any(not isinstance(c, int) or c < 0 or c > 9 for c in group):
            raise ParamsError(f"params.yaml: stream: MNIST-1D classes are 0-9, got {group}")
        seen |= set(group)
    groups = [[int(c) for c in group] for group in groups]
    raw = generate_mnist1d(params.num_samples, params.test_fraction, params.seed)
    windows = []
    for index, group in enumerate(groups):
        train = np.isin(raw["y"], group)
        test = np.isin(raw["y_test"], group)
        windows.append(
            WindowArrays(
                index=index,
                classes=sorted(group),
                x_train=raw["x"][train],
                y_train=raw["y"][train],
                x_test=raw["x_test"][test],
                y_test=raw["y_test"][test],
            )
        )
    return windows


def drift_windows(params: StreamParams) -> list[WindowArrays]:
    """Domain-incremental: every window holds all ten classes, generated with its own seed
    and with the corruption settings of its `drift` entry."""
    for index, entry in enumerate(params.drift):
        unknown = sorted(set(entry) - set(DRIFT_KEYS))
        if unknown:
            raise ParamsError(f"params.yaml: stream.drift.{index}: unknown setting {unknown}; settings: {list(DRIFT_KEYS)}")
    windows = []
    for index, entry in enumerate(params.drift):
        raw = generate_mnist1d(params.num_samples, params.test_fraction, params.seed + index, entry)
        windows.append(WindowArrays(index, list(range(10)), raw["x"], raw["y"], raw["x_test"], raw["y_test"]))
    return windows


def build_windows(params: StreamParams) -> list[WindowArrays]:
    """The windows of the configured built-in source."""
    return drift_windows(params) if params.source == "mnist1d-drift" else class_incremental_windows(params)
