"""Fashion-MNIST as a stream: Split-FMNIST (class-incremental) or a domain-incremental
variant (permuted pixels or rotated images per window), from the IDX files `fetch` put in
data/external/fashion-mnist. Training rows come from the official training set and test
rows from the official test set; `train_per_class` / `test_per_class` draw a seeded subset
so that a CPU run stays short, and null takes every row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from components.config import FashionMnistParams, StreamParams
from components.data.fetch import FASHION_MNIST_DIR
from components.data.idx_source import read_idx
from components.data.stream_io import WindowArrays
from components.data.windowing import PreparedStream
from components.errors import StreamError

CLASS_NAMES = ["tshirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def _split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise StreamError(f"{folder}: {prefix} images {images.shape} and labels {labels.shape} do not match Fashion-MNIST")
    return images, labels.astype(np.int64)


def _draw(labels: np.ndarray, classes: list[int], per_class: int | None, rng: np.random.Generator,
          taken: np.ndarray, where: str) -> np.ndarray:
    """Row indices: `per_class` rows of each class not yet `taken` (all when None), in file order."""
    rows = []
    for c in classes:
        free = np.flatnonzero((labels == c) & ~taken)
        if per_class is not None:
            if len(free) < per_class:
                raise StreamError(f"{where}: class {CLASS_NAMES[c]!r} has {len(free)} rows left, "
                                  f"{per_class} asked (lower stream.fashion_mnist.*_per_class)")
            free = np.sort(rng.choice(free, per_class, replace=False))
        rows.append(free)
    chosen = np.sort(np.concatenate(rows))
    taken[chosen] = True
    return chosen


def _rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    if degrees % 360 == 0:
        return images
    from scipy.ndimage import rotate  # scipy comes with scikit-learn / river

    return rotate(images.astype(np.float32), degrees, axes=(1, 2), reshape=False, order=1, mode="constant")


def fashion_mnist_stream(stream: StreamParams, root: Path) -> PreparedStream:
    fm = stream.fashion_mnist
    assert fm is not None
    folder = root / "data" / "external" / FASHION_MNIST_DIR
    if not folder.is_dir():
        raise StreamError(f"{folder}: not found; the fetch stage fills it (dvc repro, or python -m flows.fetch)")
    train = _split(folder, "train")
    test = _split(folder, "t10k")
    windows = _window_classes(fm)
    rng = np.random.default_rng(stream.seed)
    taken = {"train": np.zeros(len(train[1]), bool), "test": np.zeros(len(test[1]), bool)}
    shared = fm.variant != "split"  # every window draws all classes: disjoint rows per window
    picks = []
    for classes in windows:
        if not shared:
            taken = {k: np.zeros_like(v) for k, v in taken.items()}
        picks.append((_draw(train[1], classes, fm.train_per_class, rng, taken["train"], str(folder)),
                      _draw(test[1], classes, fm.test_per_class, rng, taken["test"], str(folder))))

    def pixels(images: np.ndarray, k: int) -> np.ndarray:
        x = images.astype(np.float32) / 255.0
        if fm.variant == "rotated":
            x = _rotate(x, fm.rotations[k])
        x = x.reshape(len(x), -1)
        if fm.variant == "permuted" and k > 0:  # window 0 stays as the images are
            x = x[:, np.random.default_rng([stream.seed, k]).permutation(x.shape[1])]
        return x

    def generate() -> Iterator[WindowArrays]:
        for k, (tr, te) in enumerate(picks):
            yield WindowArrays(k, sorted(windows[k]), np.ascontiguousarray(pixels(train[0][tr], k)), train[1][tr],
                               np.ascontiguousarray(pixels(test[0][te], k)), test[1][te])

    extra = {"features": {"idx_shape": [28, 28]}, "fashion_mnist": {
        "variant": fm.variant, "window_classes": windows, "train_per_class": fm.train_per_class,
        "test_per_class": fm.test_per_class, "splits": "train rows from the training set, test rows from the test set",
        **({"rotations": fm.rotations} if fm.variant == "rotated" else {}),
        **({"permutation_seeds": [[stream.seed, k] for k in range(1, len(windows))]} if fm.variant == "permuted" else {}),
    }}
    return PreparedStream(generate(), list(CLASS_NAMES), extra)


def _window_classes(fm: FashionMnistParams) -> list[list[int]]:
    if fm.variant == "split":
        flat = [c for group in fm.window_classes for c in group]
        bad = [c for c in flat if not 0 <= c < 10]
        if bad or len(set(flat)) != len(flat) or any(not g for g in fm.window_classes):
            raise StreamError("params.yaml: stream.fashion_mnist.window_classes: non-empty groups of distinct class "
                              f"indices 0-9 expected, got {fm.window_classes}")
        return [list(g) for g in fm.window_classes]
    count = fm.windows if fm.variant == "permuted" else len(fm.rotations)
    return [list(range(10)) for _ in range(count)]
