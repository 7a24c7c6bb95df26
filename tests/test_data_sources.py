"""The data layer's sources: river drift streams, a user's parquet/CSV table, IDX files, and
one test per kind of bad input (message, and the previous stream left as it was)."""

from __future__ import annotations

import gzip
import json
import re
import struct
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from components.config import StreamParams
from components.data.sources import build_stream
from components.data.stream_io import content_hash, read_manifest, read_window, write_stream
from components.errors import ParamsError, StreamError

N = 600


def raw_dir(root: Path) -> Path:
    """root/data/raw: where a stream's input files must live."""
    path = root / "data" / "raw"
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepare(root: Path, stream: dict, out: Path | None = None):
    params = StreamParams.model_validate({"name": "s", "test_fraction": 0.25, **stream})
    prepared = build_stream(params, root)
    out = out or root / "streams" / params.name
    return write_stream(out, params.name, prepared.windows, prepared.class_names, {"generator": params.source}, prepared.extra)


def table(n: int = N, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.choice(["cat", "dog", "eel"], n)
    return pl.DataFrame(
        {
            "f1": rng.normal(size=n) + (labels == "dog"),
            "f2": rng.normal(size=n) * 10,
            "count": rng.integers(0, 5, n),
            "species": labels,
            "week": np.repeat(np.arange(3), n // 3),
            "when": pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 3, 23, 59), interval=f"{72 * 3600 // n}s", eager=True)[:n].cast(pl.String),
            "note": ["x"] * n,
        }
    )


TABLE = {"source": "table", "table": {"path": "data/raw/t.parquet", "label": "species", "exclude": ["note", "when"], "window": {"column": "week"}}}


def test_river_drift_stream_is_deterministic_and_drifts(tmp_path):
    river = {"source": "river-drift", "river": {"generator": "agrawal", "concepts": [0, 2, 2], "rows_per_window": 800, "drift_width": 100}}
    a = prepare(tmp_path, river, tmp_path / "a")
    b = prepare(tmp_path, river, tmp_path / "b")
    assert a.content_hash == b.content_hash
    assert (tmp_path / "a" / "stream.json").read_bytes() == (tmp_path / "b" / "stream.json").read_bytes()
    raw = json.loads((tmp_path / "a" / "stream.json").read_text())
    assert a.num_windows == 3 and a.num_features == 9 and a.class_names == ["0", "1"]
    assert raw["drifts"] == [{"window": 1, "from": 0, "to": 2, "width": 100}]
    assert [w["rows"] for w in a.windows] == [{"train": 600, "test": 200}] * 3
    x0, _ = read_window(tmp_path / "a", a, "train", 0)
    assert abs(x0.mean()) < 0.05 and abs(x0.std() - 1) < 0.05  # standardized on window 0's train rows


def test_river_concept_change_changes_the_labelling():
    from components.data.river_source import _generator

    rows = list(_generator("agrawal", 0, 0.0, 1).take(2000))
    same_x = list(_generator("agrawal", 2, 0.0, 1).take(2000))
    assert [x for x, _ in rows] == [x for x, _ in same_x]  # same seed, same feature draws
    agreement = np.mean([y0 == y2 for (_, y0), (_, y2) in zip(rows, same_x)])
    assert agreement < 0.9  # concept 2 labels the same customers differently


def test_river_drift_width_too_wide_is_refused(tmp_path):
    with pytest.raises(ParamsError, match="drift_width"):
        prepare(tmp_path, {"source": "river-drift", "river": {"rows_per_window": 100, "drift_width": 80}})


def test_parquet_table_by_window_column_maps_string_labels(tmp_path):
    table().write_parquet(raw_dir(tmp_path) / "t.parquet")
    manifest = prepare(tmp_path, TABLE)
    raw = json.loads((tmp_path / "streams" / "s" / "stream.json").read_text())
    assert manifest.class_names == ["cat", "dog", "eel"]
    assert raw["features"] == ["f1", "f2", "count"]
    assert manifest.num_windows == 3 and manifest.num_features == 3
    assert sum(w["rows"]["train"] + w["rows"]["test"] for w in manifest.windows) == N
    assert [w["rows"]["test"] for w in manifest.windows] == [50, 50, 50]
    x, y = read_window(tmp_path / "streams" / "s", manifest, "test", 1)
    assert x.shape == (50, 3) and set(np.unique(y)) <= {0, 1, 2}


def test_csv_table_cut_by_timestamp_and_length(tmp_path):
    table().write_csv(raw_dir(tmp_path) / "t.csv")
    stream = {"source": "table", "table": {"path": "data/raw/t.csv", "label": "species", "features": ["f1", "f2"],
                                           "window": {"timestamp": "when", "length": "1d"}}}
    manifest = prepare(tmp_path, stream)
    assert manifest.num_windows == 3
    assert [w["rows"]["train"] + w["rows"]["test"] for w in manifest.windows] == [200, 200, 200]


def test_table_cut_by_row_count_and_explicit_class_order(tmp_path):
    table().write_parquet(raw_dir(tmp_path) / "t.parquet")
    stream = {**TABLE, "table": {**TABLE["table"], "classes": ["eel", "dog", "cat"], "window": {"rows": 250}}}
    manifest = prepare(tmp_path, stream)
    assert manifest.class_names == ["eel", "dog", "cat"]
    assert [w["rows"]["train"] + w["rows"]["test"] for w in manifest.windows] == [250, 250, 100]


def test_vector_column_and_class_groups(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, N)
    pl.DataFrame({"x": rng.normal(size=(N, 6)).tolist(), "label": labels}).write_parquet(raw_dir(tmp_path) / "t.parquet")
    stream = {"source": "table", "pretrain_classes": [0, 1], "window_classes": [[2], [3]],
              "table": {"path": "data/raw/t.parquet", "window": {"classes": True}, "normalize": False}}
    manifest = prepare(tmp_path, stream)
    assert manifest.num_features == 6
    assert [w["classes"] for w in manifest.windows] == [[0, 1], [2], [3]]


def test_nan_rows_dropped_when_asked(tmp_path):
    frame = table().with_columns(pl.when(pl.int_range(N) % 100 == 7).then(None).otherwise(pl.col("f2")).alias("f2"))
    frame.write_parquet(raw_dir(tmp_path) / "t.parquet")
    stream = {**TABLE, "table": {**TABLE["table"], "invalid_rows": "drop"}}
    prepare(tmp_path, stream)
    raw = json.loads((tmp_path / "streams" / "s" / "stream.json").read_text())
    assert raw["dropped_invalid_rows"] == 6
    assert sum(w["rows"]["train"] + w["rows"]["test"] for w in raw["windows"]) == N - 6


def _idx(path: Path, array: np.ndarray, code: int) -> None:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload, mtime=0))
    else:
        path.write_bytes(payload)


def test_idx_files_become_a_class_incremental_stream(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(N, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, N).astype(np.uint8)
    _idx(raw_dir(tmp_path) / "images.idx3-ubyte.gz", images, 0x08)
    _idx(raw_dir(tmp_path) / "labels.idx1-ubyte", labels, 0x08)
    stream = {"source": "idx", "pretrain_classes": [0, 1, 2, 3], "window_classes": [[4, 5, 6], [7, 8, 9]],
              "idx": {"images": "data/raw/images.idx3-ubyte.gz", "labels": "data/raw/labels.idx1-ubyte"}}
    manifest = prepare(tmp_path, stream)
    assert manifest.num_features == 16 and manifest.num_windows == 3
    x, y = read_window(tmp_path / "streams" / "s", manifest, "train", 1)
    assert set(np.unique(y)) == {4, 5, 6} and 0.0 <= x.min() and x.max() <= 1.0
    rows_of_0 = np.flatnonzero(np.isin(labels, [0, 1, 2, 3]))
    assert manifest.windows[0]["rows"]["train"] + manifest.windows[0]["rows"]["test"] == len(rows_of_0)


def test_truncated_idx_file_is_refused(tmp_path):
    _idx(raw_dir(tmp_path) / "images", np.zeros((10, 4, 4), dtype=np.uint8), 0x08)
    _idx(raw_dir(tmp_path) / "labels", np.zeros(10, dtype=np.uint8), 0x08)
    (raw_dir(tmp_path) / "images").write_bytes((raw_dir(tmp_path) / "images").read_bytes()[:-5])
    with pytest.raises(StreamError, match=r"images: truncated or padded IDX file"):
        prepare(tmp_path, {"source": "idx", "idx": {"images": "data/raw/images", "labels": "data/raw/labels"}})


# ---- bad input: one test per case, each on top of a good stream that must survive ----


def _write_bad(tmp_path: Path, frame_or_bytes, name: str = "bad.parquet") -> None:
    path = raw_dir(tmp_path) / name
    if isinstance(frame_or_bytes, bytes):
        path.write_bytes(frame_or_bytes)
    elif name.endswith(".csv"):
        frame_or_bytes.write_csv(path)
    else:
        frame_or_bytes.write_parquet(path)


def _refused(tmp_path: Path, table_params: dict, pattern: str) -> str:
    """A good stream exists; the bad input raises one line matching `pattern` and leaves it."""
    table().write_parquet(raw_dir(tmp_path) / "t.parquet")
    good = prepare(tmp_path, TABLE)
    out = tmp_path / "streams" / "s"
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    with pytest.raises((StreamError, ParamsError)) as error:
        prepare(tmp_path, {"source": "table", "table": {**TABLE["table"], **table_params}})
    message = str(error.value)
    assert "\n" not in message
    assert re.search(pattern, message), message
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert read_manifest(out).content_hash == good.content_hash == content_hash(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["s"]  # no staging directory left
    return message


def test_missing_file(tmp_path):
    _refused(tmp_path, {"path": "data/raw/nope.parquet"}, r"nope\.parquet: file not found")


def test_glob_that_matches_nothing(tmp_path):
    _refused(tmp_path, {"path": "data/raw/events-*.parquet"}, r"events-\*\.parquet: no file matches")


def test_glob_files_with_different_columns(tmp_path):
    table().write_parquet(raw_dir(tmp_path) / "part-1.parquet")
    table().drop(table().columns[0]).write_parquet(raw_dir(tmp_path) / "part-2.parquet")
    _refused(tmp_path, {"path": "data/raw/part-*.parquet"}, r"part-\*\.parquet: the matching files do not share one schema")


def test_unreadable_parquet(tmp_path):
    _write_bad(tmp_path, b"PAR1 this is not parquet")
    _refused(tmp_path, {"path": "data/raw/bad.parquet"}, r"bad\.parquet: unreadable parquet")


def test_truncated_parquet(tmp_path):
    table().write_parquet(raw_dir(tmp_path) / "whole.parquet")
    data = (raw_dir(tmp_path) / "whole.parquet").read_bytes()
    _write_bad(tmp_path, data[: len(data) // 2])
    _refused(tmp_path, {"path": "data/raw/bad.parquet"}, r"bad\.parquet: unreadable parquet")


def test_misspelled_column_names_the_columns_present(tmp_path):
    message = _refused(tmp_path, {"label": "specis"}, r"label column 'specis' not found \(did you mean 'species'\?\); columns present")
    assert "'f1', 'f2', 'count', 'species', 'week', 'when', 'note'" in message


def test_non_numeric_feature_column(tmp_path):
    _refused(tmp_path, {"exclude": ["when"]}, r"t\.parquet: feature column 'note' is String, expected a number")


def test_nan_and_infinite_values_fail_with_a_count(tmp_path):
    frame = table().with_columns(
        pl.when(pl.int_range(N) == 10).then(float("nan")).when(pl.int_range(N) == 20).then(float("inf")).otherwise(pl.col("f1")).alias("f1")
    )
    _write_bad(tmp_path, frame)
    _refused(tmp_path, {"path": "data/raw/bad.parquet"}, r"2 rows have NaN, infinite or missing feature values \(first at row 10, column 'f1'\); set stream\.table\.invalid_rows: drop")


def test_labels_that_cannot_be_mapped(tmp_path):
    _refused(tmp_path, {"classes": ["cat", "dog"]}, r"label column 'species': \d+ rows have labels outside stream\.table\.classes \['cat', 'dog'\], e\.g\. \['eel'\]")


def test_missing_labels(tmp_path):
    _write_bad(tmp_path, table().with_columns(pl.when(pl.int_range(N) == 5).then(None).otherwise(pl.col("species")).alias("species")))
    _refused(tmp_path, {"path": "data/raw/bad.parquet"}, r"label column 'species': 1 rows have no label \(first at row 5\)")


def test_window_with_no_rows(tmp_path):
    _write_bad(tmp_path, table().with_columns((pl.col("week") * 2).alias("week")))  # weeks 0, 2, 4
    _refused(tmp_path, {"path": "data/raw/bad.parquet"}, r"bad\.parquet: window column 'week': no rows have value 1 \(window 1 of values 0\.\.4\)")


def test_time_window_with_no_rows(tmp_path):
    frame = table().filter(~pl.col("when").str.starts_with("2024-01-02"))
    _write_bad(tmp_path, frame, "bad.csv")
    _refused(
        tmp_path, {"path": "data/raw/bad.csv", "exclude": ["note", "week"], "window": {"timestamp": "when", "length": "1d"}},
        r"timestamp column 'when': window 1 \(1d from 2024-01-02 00:00:00\) has no rows",
    )


def test_window_with_no_test_rows(tmp_path):
    _write_bad(tmp_path, table().with_columns(pl.when(pl.int_range(N) == N - 1).then(3).otherwise(pl.col("week")).alias("week")))
    _refused(tmp_path, {"path": "data/raw/bad.parquet"}, r"window 3 has 1 rows, leaving no test rows at test_fraction 0\.25")


def test_feature_vectors_of_unequal_length(tmp_path):
    vectors = [[0.0] * 5] * N
    vectors[42] = [0.0] * 4
    _write_bad(tmp_path, pl.DataFrame({"x": vectors, "species": table()["species"], "week": table()["week"]}))
    _refused(tmp_path, {"path": "data/raw/bad.parquet", "exclude": []}, r"column 'x': feature vectors of unequal length \(row 0 has 5 values, row 42 has 4\)")


def test_timestamp_that_does_not_parse(tmp_path):
    frame = table().with_columns(pl.when(pl.int_range(N) == 3).then(pl.lit("next tuesday")).otherwise(pl.col("when")).alias("when"))
    _write_bad(tmp_path, frame, "bad.csv")
    _refused(
        tmp_path, {"path": "data/raw/bad.csv", "exclude": ["note", "week"], "window": {"timestamp": "when", "length": "1d"}},
        r"bad\.csv: timestamp column 'when': value 'next tuesday' at row 3 does not parse as a timestamp",
    )


def test_window_length_that_is_not_a_length(tmp_path):
    _refused(tmp_path, {"exclude": ["note", "week"], "window": {"timestamp": "when", "length": "daily"}}, r"window\.length: 'daily' is not a length")


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.csv", "data/raw/../../outside.csv", "data/raw/link.csv"])
def test_a_table_outside_data_raw_is_refused_without_echoing_it(tmp_path, path):
    """A shared params.yaml must not make prepare read any file (nor print its first line):
    only files under data/raw/, which prepare's DVC dependency covers, links followed."""
    secret = "root:x:0:0:secret-first-line"
    (tmp_path / "outside.csv").write_text(f"{secret}\n1\n")
    (raw_dir(tmp_path) / "link.csv").symlink_to(tmp_path / "outside.csv")
    message = _refused(tmp_path, {"path": path, "format": "csv"}, r"not under data/raw/|links outside data/raw/")
    assert "secret" not in message


def test_an_idx_file_outside_data_raw_is_refused(tmp_path):
    with pytest.raises(StreamError, match=r"stream\.idx\.images: '/etc/passwd' is not under data/raw/"):
        prepare(tmp_path, {"source": "idx", "idx": {"images": "/etc/passwd", "labels": "data/raw/labels"}})


def test_the_prepare_line_of_a_long_stream_stays_short(tmp_path, capsys):
    """200 daily windows must not print a 10,000-character line: the first windows, how many
    more, the last; stream.json keeps every one."""
    from tasks.data import SHOWN_WINDOWS, prepare_stream
    from tests.conftest import tiny_params, write_params

    params = tiny_params()
    params["stream"] = {"name": "long", "source": "river-drift", "test_fraction": 0.25,
                        "river": {"generator": "sea", "concepts": [k % 4 for k in range(40)], "rows_per_window": 40,
                                  "drift_width": 1}}
    write_params(tmp_path, params)
    summary = prepare_stream.fn("params.yaml", str(tmp_path))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary["num_windows"] == 40 and len(line) < 300, line
    assert len(re.findall(r"\bw\d+ ", line)) == SHOWN_WINDOWS - 1 and "... (33 more)" in line and ", w39 " in line
