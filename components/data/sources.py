"""The one entry point from `stream:` params to the windows `write_stream` stores."""

from __future__ import annotations

from pathlib import Path

from components.config import StreamParams
from components.data.windowing import PreparedStream


def build_stream(stream: StreamParams, root: Path) -> PreparedStream:
    """Windows, class names and manifest entries for the configured source.

    Sources are imported on use: river and the table reader are not needed for MNIST-1D.
    """
    if stream.source in ("mnist1d", "mnist1d-classinc", "mnist1d-drift"):
        from components.data.mnist1d_source import build_windows

        return PreparedStream(build_windows(stream), [str(c) for c in range(10)])
    if stream.source == "river-drift":
        from components.data.river_source import river_stream

        return river_stream(stream)
    if stream.source == "table":
        from components.data.table_source import table_stream

        return table_stream(stream, root)
    if stream.source == "fashion-mnist":
        from components.data.fashion_mnist_source import fashion_mnist_stream

        return fashion_mnist_stream(stream, root)
    if stream.source == "river-dataset":
        from components.data.river_datasets import river_dataset_stream

        return river_dataset_stream(stream, root)
    if stream.source == "acs-employment":
        from components.data.acs_source import acs_stream

        return acs_stream(stream, root)
    from components.data.idx_source import idx_stream

    return idx_stream(stream, root)
