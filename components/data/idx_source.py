"""MNIST-style IDX files (MNIST, Fashion-MNIST, ...), plain or gzipped, as a stream.

The format is small enough to read by hand with numpy (a magic number, the dimensions,
then the raw big-endian values); no package is needed and none reads it offline.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl

from components.config import StreamParams
from components.data.table_source import ROW, resolve, window_ids
from components.data.windowing import PreparedStream, windows_from_rows
from components.errors import StreamError

# The IDX type byte -> numpy big-endian dtype.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """The array stored in one IDX file, with its shape."""
    if not path.is_file():
        raise StreamError(f"{path}: file not found (stream.idx in params.yaml)")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise StreamError(f"{path}: unreadable ({type(error).__name__}: {error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise StreamError(f"{path}: not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    dtype, ndim = np.dtype(IDX_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise StreamError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise StreamError(f"{path}: truncated or padded IDX file: {len(data)} bytes, shape {shape} needs {expected}")
    return np.frombuffer(data[header:], dtype=dtype).reshape(shape)


def idx_stream(stream: StreamParams, root: Path) -> PreparedStream:
    idx = stream.idx
    assert idx is not None
    images_path, labels_path = resolve(root, idx.images, "stream.idx.images"), resolve(root, idx.labels, "stream.idx.labels")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if labels.ndim != 1:
        raise StreamError(f"{labels_path}: labels must be one-dimensional, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise StreamError(f"{images_path}: {images.shape[0]} images but {labels_path.name} has {labels.shape[0]} labels")
    if idx.window.column is not None or idx.window.timestamp is not None:
        raise StreamError("params.yaml: stream.idx.window: IDX files have no columns; cut by `classes` or `rows`")
    x = images.reshape(images.shape[0], -1).astype(np.float32)
    if images.dtype == np.uint8:
        x /= 255.0
    values = np.unique(labels)
    class_names = [str(int(v)) for v in values]
    y = np.searchsorted(values, labels).astype(np.int64)
    frame = pl.DataFrame({ROW: np.arange(len(y))})
    ids, num_windows, _, notes = window_ids(images_path, frame, idx.window, y, class_names, stream)
    inside = ids >= 0
    prepared = windows_from_rows(
        x[inside], y[inside], ids[inside], num_windows, class_names, stream.test_fraction, stream.seed,
        str(images_path), normalize=False,
    )
    prepared.extra.update(features={"idx_shape": list(images.shape[1:])}, window_cut=notes)
    return prepared
