"""river's real datasets as a stream. The bundled ones (ImageSegments, Shuttle, Phishing,
Bananas) ship inside river's wheel; the ones river downloads (Elec2, Insects) are read from
data/raw/river/<Name>/<file> (river's layout under RIVER_DATA), so a run never reaches the
internet and the file is versioned with `dvc add` like any input. river's own readers parse
them (converters, column names), so the schema is river's.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from components.config import StreamParams
from components.data.table_source import ROW, window_ids
from components.data.windowing import PreparedStream, windows_from_rows
from components.errors import StreamError

RAW_RIVER = Path("data") / "raw" / "river"


@contextlib.contextmanager
def _river_data(folder: Path) -> Iterator[None]:
    """RIVER_DATA -> `folder` for the block: where river's remote datasets look for their file."""
    before = os.environ.get("RIVER_DATA")
    os.environ["RIVER_DATA"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RIVER_DATA", None)
        else:
            os.environ["RIVER_DATA"] = before


def _rows(name: str, root: Path, max_rows: int | None) -> tuple[list[dict], list, str]:
    from river import datasets

    dataset = getattr(datasets, name)()
    if isinstance(dataset, datasets.base.RemoteDataset):
        folder = root / RAW_RIVER
        with _river_data(folder):
            path = folder / type(dataset).__name__ / dataset.filename  # river's `path`, which would mkdir
            where = str(path.relative_to(root) if path.is_relative_to(root) else path)
            if not path.is_file():  # checked first: iterating would start river's download
                raise StreamError(
                    f"{where}: not found; river's {name} is downloaded, not bundled: on a machine with internet run "
                    f"RIVER_DATA={RAW_RIVER} python -c 'from river.datasets import {name}; {name}().download()', "
                    f"copy {RAW_RIVER} here and `dvc add {RAW_RIVER}`"
                )
            try:  # river's parser itself: iterating the dataset would download again a file whose size is
                # not the published one (a trimmed or updated copy) instead of reading it
                rows = list(itertools.islice(dataset._iter(), max_rows))
            except (ValueError, KeyError, TypeError) as error:
                raise StreamError(f"{where}: not river's {name} format ({type(error).__name__}: {error})") from None
    else:
        where = f"river.datasets.{name} ({Path(dataset.path).name}, bundled)"
        rows = list(dataset.take(max_rows) if max_rows else dataset)
    if not rows:
        raise StreamError(f"{where}: no rows")
    return [x for x, _ in rows], [y for _, y in rows], where


def river_dataset_stream(stream: StreamParams, root: Path) -> PreparedStream:
    spec = stream.river_dataset
    assert spec is not None
    if spec.window.column is not None or spec.window.timestamp is not None:
        raise StreamError("params.yaml: stream.river_dataset.window: river's datasets are cut by `rows` or `classes`")
    features, labels, where = _rows(spec.name, root, spec.max_rows)
    names = list(features[0])
    try:
        x = np.array([[float(row[n]) for n in names] for row in features], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise StreamError(f"{where}: a row's features are not all numbers ({type(error).__name__}: {error})") from None
    text = [str(v) for v in labels]
    class_names = sorted(set(text))
    y = np.searchsorted(class_names, text).astype(np.int64)
    frame = pl.DataFrame({ROW: np.arange(len(y))})
    ids, num_windows, _, notes = window_ids(Path(where), frame, spec.window, y, class_names, stream)
    inside = ids >= 0
    prepared = windows_from_rows(x[inside], y[inside], ids[inside], num_windows, class_names, stream.test_fraction,
                                 stream.seed, where, normalize=True)
    prepared.extra.update(features=names, window_cut=notes, river_dataset={"name": spec.name, "read_from": where,
                                                                           "rows": len(y)})
    return prepared
