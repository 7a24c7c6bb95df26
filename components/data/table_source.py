"""A user's own table (parquet or CSV) as a stream: columns checked, labels mapped to class
indices, rows cut into windows by a window column, a timestamp and a length, a row count or
class groups.

Everything is columnar (polars' lazy scan, then numpy); no Python loop touches rows. Every
problem is raised as one `StreamError` line naming the file, the column and, where it
helps, the first offending row (0-based, counted in the file).
"""

from __future__ import annotations

import datetime
import difflib
import re
from pathlib import Path

import numpy as np
import polars as pl

from components.config import StreamParams, TableParams, WindowCut
from components.data.windowing import PreparedStream, windows_from_rows
from components.errors import StreamError

ROW = "__slowfast_row"
SUFFIX_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


RAW_DIR = Path("data") / "raw"


def resolve(root: Path, relative: str, key: str = "stream.table.path") -> Path:
    """`root / relative`, refused unless it lies under data/raw/: the prepare stage's DVC
    dependency covers only that folder (a file elsewhere could change with nothing rerun),
    and a path from a shared params.yaml must not make prepare read (and echo) any file."""
    path = root / relative
    if Path(relative).is_absolute() or not _inside_raw(root, path):
        raise StreamError(
            f"params.yaml: {key}: {relative!r} is not under data/raw/; inputs live there (prepare's DVC "
            f"dependency): copy the file into data/raw/ and `dvc add` it"
        )
    return path


def _inside_raw(root: Path, path: Path) -> bool:
    """Whether `path` (links followed) is inside root/data/raw."""
    raw = (root / RAW_DIR).resolve()
    target = path.resolve() if path.exists() else path.parent.resolve() / path.name
    return target.is_relative_to(raw) and target != raw


def matching_files(path: Path, root: Path | None = None) -> list[Path]:
    """The file, or every file a glob pattern matches (sorted by name: `events-2026-11-*.csv`
    grows by one file per day, and the stream by the windows the new rows make). With
    `root`, a matched file that links out of data/raw/ is refused."""
    if not any(ch in path.name for ch in "*?["):
        if not path.is_file():
            raise StreamError(f"{path}: file not found (stream.table.path in params.yaml)")
        files = [path]
    else:
        files = sorted(p for p in path.parent.glob(path.name) if p.is_file())
    if not files:
        raise StreamError(f"{path}: no file matches (stream.table.path in params.yaml)")
    for file in files:
        if root is not None and not _inside_raw(root, file):
            raise StreamError(f"{file}: links outside data/raw/; copy the file into data/raw/ and `dvc add` it")
    return files


def scan(path: Path, fmt: str, root: Path | None = None) -> pl.LazyFrame:
    """A lazy frame over the file (or the files of a glob, concatenated in name order), with
    its schema read (so a broken file fails here)."""
    files = matching_files(path, root)
    if fmt == "auto":
        fmt = SUFFIX_FORMATS.get(files[0].suffix.lower(), "")
        if not fmt:
            raise StreamError(f"{files[0]}: cannot tell the format from suffix {files[0].suffix!r}; set stream.table.format")
    frames = []
    for file in files:
        try:
            frame = pl.scan_parquet(file) if fmt == "parquet" else pl.scan_csv(file, infer_schema_length=10000)
            frame.collect_schema()
        except Exception as error:  # polars raises several types for broken files
            raise StreamError(f"{file}: unreadable {fmt} ({_first_line(error)})") from None
        frames.append(frame)
    if len(frames) == 1:
        return frames[0]
    try:
        combined = pl.concat(frames, how="vertical")
        combined.collect_schema()
    except Exception as error:
        raise StreamError(f"{path}: the matching files do not share one schema ({_first_line(error)})") from None
    return combined


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _require(path: Path, columns: list[str], name: str, what: str) -> None:
    if name not in columns:
        close = difflib.get_close_matches(name, columns, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise StreamError(f"{path}: {what} column {name!r} not found{hint}; columns present: {columns}")


def _is_numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Boolean


def feature_columns(path: Path, schema: pl.Schema, table: TableParams) -> list[str]:
    columns = list(schema.names())
    cut = table.window
    _require(path, columns, table.label, "label")
    for name, what in ((cut.column, "window"), (cut.timestamp, "timestamp")):
        if name is not None:
            _require(path, columns, name, what)
    for name in table.exclude:
        _require(path, columns, name, "excluded")
    if table.features is not None:
        for name in table.features:
            _require(path, columns, name, "feature")
        features = list(table.features)
    else:
        reserved = {table.label, cut.column, cut.timestamp, *table.exclude}
        features = [c for c in columns if c not in reserved]
    if not features:
        raise StreamError(f"{path}: no feature columns left (columns present: {columns})")
    for name in features:
        dtype = schema[name]
        if isinstance(dtype, (pl.List, pl.Array)):
            if len(features) > 1:
                raise StreamError(f"{path}: column {name!r} holds vectors ({dtype}); a vector column must be the only feature")
            if not _is_numeric(dtype.inner):
                raise StreamError(f"{path}: column {name!r} holds {dtype}, expected vectors of numbers")
        elif not _is_numeric(dtype):
            raise StreamError(
                f"{path}: feature column {name!r} is {dtype}, expected a number "
                "(list it under stream.table.exclude, or name the features in stream.table.features)"
            )
    return features


def feature_matrix(path: Path, frame: pl.DataFrame, features: list[str]) -> np.ndarray:
    """[n, d] float32; missing values become NaN (caught with the invalid rows)."""
    if len(features) == 1 and isinstance(frame.schema[features[0]], (pl.List, pl.Array)):
        name = features[0]
        column = frame[name]
        if isinstance(column.dtype, pl.List):
            lengths = column.list.len().fill_null(-1).to_numpy()
            width = int(lengths[0]) if len(lengths) else 0
            bad = np.flatnonzero(lengths != width)
            if bad.size:
                row = int(frame[ROW][int(bad[0])])
                raise StreamError(
                    f"{path}: column {name!r}: feature vectors of unequal length "
                    f"(row {int(frame[ROW][0])} has {width} values, row {row} has {max(int(lengths[bad[0]]), 0)})"
                )
            column = column.cast(pl.Array(pl.Float32, width))
        return column.cast(pl.Array(pl.Float32, column.dtype.size)).to_numpy()
    # Filled column by column: one float32 matrix and one column's temporary at a time,
    # instead of a cast copy of the whole frame plus a row-major copy of that.
    x = np.empty((frame.height, len(features)), dtype=np.float32)
    for i, name in enumerate(features):
        x[:, i] = frame[name].cast(pl.Float64).to_numpy()  # nulls -> NaN
    return x


def label_indices(path: Path, labels: pl.Series, rows: pl.Series, classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Class index per row and the class names (sorted label values unless `classes` is set)."""
    name = labels.name
    missing = labels.is_null()
    if missing.any():
        first = int(rows.filter(missing)[0])
        raise StreamError(f"{path}: label column {name!r}: {int(missing.sum())} rows have no label (first at row {first})")
    if labels.dtype.is_float():
        fractional = labels != labels.round(0)
        if fractional.any():
            first = int(rows.filter(fractional)[0])
            raise StreamError(
                f"{path}: label column {name!r} has non-integer values (e.g. {labels.filter(fractional)[0]} "
                f"at row {first}); streams are classification, labels must be classes"
            )
        labels = labels.cast(pl.Int64)
    if classes is None:
        uniques = labels.unique().sort()
        classes = [str(v).lower() if labels.dtype == pl.Boolean else str(v) for v in uniques.to_list()]
    as_text = labels.cast(pl.String) if labels.dtype != pl.Boolean else labels.cast(pl.String).str.to_lowercase()
    mapping = {c: i for i, c in enumerate(classes)}
    index = as_text.replace_strict(mapping, default=None, return_dtype=pl.Int64)
    unmapped = index.is_null()
    if unmapped.any():
        values = as_text.filter(unmapped).unique(maintain_order=True).head(5).to_list()
        first = int(rows.filter(unmapped)[0])
        raise StreamError(
            f"{path}: label column {name!r}: {int(unmapped.sum())} rows have labels outside "
            f"stream.table.classes {classes}, e.g. {values} (first at row {first})"
        )
    return index.to_numpy(), classes


def parse_length(text: str) -> int:
    """'30s', '15m', '6h', '1d', '2w' -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match or int(match.group(1)) == 0:
        raise StreamError(f"params.yaml: stream.table.window.length: {text!r} is not a length like 30s, 15m, 6h, 1d, 2w")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def timestamps(path: Path, column: pl.Series, rows: pl.Series, time_format: str | None) -> pl.Series:
    name = column.name
    if column.dtype == pl.Date:
        column = column.cast(pl.Datetime("us"))
    elif column.dtype == pl.String:
        parsed = column.str.to_datetime(format=time_format, strict=False, time_unit="us")
        bad = parsed.is_null() & column.is_not_null()
        if bad.any():
            raise StreamError(
                f"{path}: timestamp column {name!r}: value {column.filter(bad)[0]!r} at row {int(rows.filter(bad)[0])} "
                f"does not parse as a timestamp{f' with format {time_format!r}' if time_format else ''} "
                f"({int(bad.sum())} rows do not)"
            )
        column = parsed
    elif not isinstance(column.dtype, pl.Datetime):
        raise StreamError(f"{path}: timestamp column {name!r} is {column.dtype}, expected a datetime or a date string")
    missing = column.is_null()
    if missing.any():
        raise StreamError(f"{path}: timestamp column {name!r}: {int(missing.sum())} rows have no timestamp (first at row {int(rows.filter(missing)[0])})")
    return column.cast(pl.Datetime("us"))


def window_ids(
    path: Path, frame: pl.DataFrame, cut: WindowCut, y: np.ndarray, class_names: list[str], stream: StreamParams
) -> tuple[np.ndarray, int, np.ndarray | None, dict]:
    """Window index per row, the number of windows, an in-window sort key (time) or None,
    and manifest notes on how the windows were cut."""
    n = frame.height
    rows = frame[ROW]
    if cut.rows is not None:
        ids = np.arange(n, dtype=np.int64) // cut.rows
        return ids, int(ids.max()) + 1 if n else 0, None, {"rows": cut.rows}
    if cut.column is not None:
        values = frame[cut.column]
        missing = values.is_null()
        if missing.any():
            raise StreamError(f"{path}: window column {cut.column!r}: {int(missing.sum())} rows have no window (first at row {int(rows.filter(missing)[0])})")
        if values.dtype.is_integer():
            low, high = int(values.min()), int(values.max())
            ids = (values - low).cast(pl.Int64).to_numpy()
            empty = np.flatnonzero(np.bincount(ids, minlength=high - low + 1) == 0)
            if empty.size:
                raise StreamError(
                    f"{path}: window column {cut.column!r}: no rows have value {low + int(empty[0])} "
                    f"(window {int(empty[0])} of values {low}..{high})"
                )
            return ids, high - low + 1, None, {"column": cut.column, "values": list(range(low, high + 1))}
        uniques = values.unique().sort()
        ids = values.replace_strict(uniques, pl.Series(range(len(uniques))), return_dtype=pl.Int64).to_numpy()
        return ids, len(uniques), None, {"column": cut.column, "values": [str(v) for v in uniques.to_list()]}
    if cut.timestamp is not None:
        seconds = parse_length(cut.length or "")
        ts = timestamps(path, frame[cut.timestamp], rows, cut.time_format)
        micros = ts.dt.epoch("us").to_numpy()
        start = int(micros.min())
        ids = (micros - start) // (seconds * 1_000_000)
        start_text = str(ts.min())
        empty = np.flatnonzero(np.bincount(ids) == 0)
        if empty.size:
            begin = ts.min() + datetime.timedelta(seconds=seconds * int(empty[0]))
            raise StreamError(
                f"{path}: timestamp column {cut.timestamp!r}: window {int(empty[0])} ({cut.length} from {begin}) has no rows"
            )
        return ids, int(ids.max()) + 1, micros, {"timestamp": cut.timestamp, "length": cut.length, "start": start_text}
    # class groups, matched by class name
    groups = [[str(c) for c in stream.pretrain_classes], *[[str(c) for c in g] for g in stream.window_classes]]
    ids = np.full(n, -1, dtype=np.int64)
    for k, group in enumerate(groups):
        unknown = [c for c in group if c not in class_names]
        if unknown:
            raise StreamError(f"{path}: stream.window_classes names classes {unknown} that are not labels in the file; labels: {class_names}")
        members = np.isin(y, [class_names.index(c) for c in group])
        if (ids[members] >= 0).any():
            raise StreamError(f"params.yaml: stream.window_classes: a class of {group} appears in two windows")
        ids[members] = k
    return ids, len(groups), None, {"classes": groups}


def table_stream(stream: StreamParams, root: Path) -> PreparedStream:
    table = stream.table
    assert table is not None
    path = resolve(root, table.path)
    lazy = scan(path, table.format, root)
    schema = lazy.collect_schema()
    features = feature_columns(path, schema, table)
    cut = table.window
    keep = list(dict.fromkeys([*features, table.label, *(c for c in (cut.column, cut.timestamp) if c)]))
    try:
        frame = lazy.with_row_index(ROW).select([ROW, *keep]).collect()
    except Exception as error:
        raise StreamError(f"{path}: unreadable ({_first_line(error)})") from None
    x = feature_matrix(path, frame, features)
    frame = frame.drop(features)  # the float32 matrix holds them now
    finite = np.isfinite(x).all(axis=1)
    dropped = 0
    if not finite.all():
        bad = np.flatnonzero(~finite)
        if table.invalid_rows == "fail":
            column = features[int(np.flatnonzero(~np.isfinite(x[bad[0]]))[0])] if len(features) > 1 else features[0]
            raise StreamError(
                f"{path}: {bad.size} rows have NaN, infinite or missing feature values (first at row "
                f"{int(frame[ROW][int(bad[0])])}, column {column!r}); set stream.table.invalid_rows: drop to skip them"
            )
        dropped = int(bad.size)
        keep_rows = pl.Series(finite)
        frame = frame.filter(keep_rows)
        x = x[finite]
    y, class_names = label_indices(path, frame[table.label], frame[ROW], table.classes)
    ids, num_windows, time_key, cut_notes = window_ids(path, frame, cut, y, class_names, stream)
    del frame
    if time_key is not None and (np.diff(time_key) < 0).any():  # rows in time order (stable for ties)
        order = np.argsort(time_key, kind="stable")
        x, y, ids = x[order], y[order], ids[order]
    in_window = ids >= 0
    if not in_window.all():  # rows of classes no window names
        x, y, ids = x[in_window], y[in_window], ids[in_window]
    prepared = windows_from_rows(
        x, y, ids, num_windows, class_names, stream.test_fraction, stream.seed, str(path), table.normalize
    )
    prepared.extra.update(
        features=features, label=table.label, window_cut=cut_notes, dropped_invalid_rows=dropped,
        rows_outside_windows=int((~in_window).sum()),
    )
    return prepared
