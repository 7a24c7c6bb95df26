"""The data contract: deterministic, atomic writes and reads that say exactly what is wrong."""

import numpy as np
import polars as pl
import pytest

from components.config import StreamParams
from components.data.mnist1d_source import class_incremental_windows
from components.data.stream_io import (
    WindowArrays,
    content_hash,
    partition_path,
    read_manifest,
    read_window,
    write_stream,
)
from components.errors import StreamError

SMALL = StreamParams(name="s", num_samples=600, test_fraction=0.25)


def _write(root, windows=None):
    return write_stream(root, "s", windows or class_incremental_windows(SMALL), [str(c) for c in range(10)], {})


def test_layout_and_manifest(tmp_path):
    manifest = _write(tmp_path / "s")
    assert manifest.num_windows == 4
    assert [w["classes"] for w in manifest.windows] == [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]
    for split in ("train", "test"):
        x, y = read_window(tmp_path / "s", manifest, split, 2)
        assert x.dtype == np.float32 and x.shape[1] == 40
        assert set(np.unique(y)) == {6, 7}
    assert read_manifest(tmp_path / "s").content_hash == content_hash(tmp_path / "s")


def test_same_input_gives_byte_identical_files(tmp_path):
    a = _write(tmp_path / "a")
    b = _write(tmp_path / "b")
    assert a.content_hash == b.content_hash
    assert (tmp_path / "a" / "stream.json").read_bytes() == (tmp_path / "b" / "stream.json").read_bytes()


def test_failed_write_leaves_previous_stream_untouched(tmp_path):
    root = tmp_path / "s"
    good = _write(root)
    broken = class_incremental_windows(SMALL)
    broken[3] = WindowArrays(3, [8, 9], broken[3].x_train, broken[3].y_train, broken[3].x_test[:0], broken[3].y_test[:0])
    with pytest.raises(StreamError, match="window 3 has no test rows"):
        _write(root, broken)
    assert read_manifest(root).content_hash == good.content_hash == content_hash(root)
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no staging directory left behind


def test_missing_column_is_named_with_the_columns_present(tmp_path):
    manifest = _write(tmp_path / "s")
    path = partition_path(tmp_path / "s", "train", 1)
    pl.read_parquet(path).rename({"y": "label"}).write_parquet(path)
    with pytest.raises(StreamError) as error:
        read_window(tmp_path / "s", manifest, "train", 1)
    message = str(error.value)
    assert str(path) in message and "'y' missing" in message and "label" in message


def test_label_out_of_range_names_the_row(tmp_path):
    manifest = _write(tmp_path / "s")
    path = partition_path(tmp_path / "s", "test", 0)
    frame = pl.read_parquet(path)
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(12).otherwise(pl.col("y")).alias("y")).write_parquet(path)
    with pytest.raises(StreamError, match=r"row 5: label 12 outside 0..9"):
        read_window(tmp_path / "s", manifest, "test", 0)


def test_truncated_parquet_is_reported_as_unreadable(tmp_path):
    manifest = _write(tmp_path / "s")
    path = partition_path(tmp_path / "s", "train", 0)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(StreamError, match="unreadable parquet"):
        read_window(tmp_path / "s", manifest, "train", 0)


def test_missing_manifest_says_how_to_make_it(tmp_path):
    with pytest.raises(StreamError, match="dvc repro prepare"):
        read_manifest(tmp_path)


def test_overlapping_class_groups_are_refused():
    from components.errors import ParamsError

    with pytest.raises(ParamsError, match="class \\[3\\] appears twice"):
        class_incremental_windows(StreamParams(num_samples=600, window_classes=[[3, 4]]))


def test_drift_stream_keeps_every_class_and_changes_the_corruption():
    from components.data.mnist1d_source import build_windows

    params = StreamParams(name="d", source="mnist1d-drift", num_samples=400,
                          drift=[{}, {"iid_noise_scale": 0.5}])
    first, second = build_windows(params)
    assert set(first.y_train.tolist()) == set(second.y_train.tolist()) == set(range(10))
    # Much more i.i.d. noise: neighbouring points of a signal decorrelate.
    def roughness(x):
        return float(np.abs(np.diff(x, axis=1)).mean())

    assert roughness(second.x_train) > 2 * roughness(first.x_train)
    again = build_windows(params)
    assert np.array_equal(again[1].x_train, second.x_train)


def test_unknown_drift_setting_is_refused():
    from components.data.mnist1d_source import build_windows
    from components.errors import ParamsError

    params = StreamParams(source="mnist1d-drift", num_samples=200, drift=[{}, {"noise": 1.0}])
    with pytest.raises(ParamsError, match=r"stream.drift.1: unknown setting \['noise'\]"):
        build_windows(params)
