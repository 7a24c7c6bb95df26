"""The stream data contract: hive-partitioned parquet plus a `stream.json` manifest.

Layout: `<root>/split=<train|test>/window=<NNNN>/part-0.parquet` with a fixed-size-list
float32 column `x` and an int64 column `y`. Writing is deterministic (fixed names, row order
and writer settings) so identical inputs give byte-identical files and DVC hashes stay put,
and atomic (a temporary directory renamed into place) so a failure never leaves a
half-written stream behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import polars as pl

from components.errors import StreamError

MANIFEST = "stream.json"
SPLITS = ("train", "test")


@dataclass
class WindowArrays:
    index: int
    classes: list[int]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class Manifest:
    name: str
    num_features: int
    class_names: list[str]
    windows: list[dict[str, Any]]
    content_hash: str
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def num_windows(self) -> int:
        return len(self.windows)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def partition_path(root: Path, split: str, window: int) -> Path:
    return root / f"split={split}" / f"window={window:04d}" / "part-0.parquet"


def _write_part(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(
        {"x": pl.Series("x", np.ascontiguousarray(x, dtype=np.float32)), "y": pl.Series("y", y.astype(np.int64))}
    )
    frame.write_parquet(path, compression="zstd", compression_level=3, statistics=False)


def content_hash(root: Path) -> str:
    """sha256 over every parquet file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.parquet")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def write_stream(
    out_dir: Path,
    name: str,
    windows: Iterable[WindowArrays],
    class_names: list[str],
    source: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """Write all windows and the manifest into `out_dir`, replacing it only when complete.

    `windows` may be a generator: each window is written and dropped before the next is
    built, so a large table never needs every window's copy in memory at once. `extra`
    adds manifest entries (feature names, normalization, label mapping, dropped rows).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        width: int | None = None
        entries = []
        for w in windows:
            for split, x, y in (("train", w.x_train, w.y_train), ("test", w.x_test, w.y_test)):
                if width is None:
                    width = x.shape[1]
                if x.ndim != 2 or x.shape[1] != width:
                    raise StreamError(
                        f"{name}: feature vectors of unequal length: window {w.index} {split} has "
                        f"{x.shape[1:]} values per row, earlier windows {width}"
                    )
                if len(y) == 0:
                    raise StreamError(f"{name}: window {w.index} has no {split} rows")
                _write_part(partition_path(staging, split, w.index), x, y)
            entries.append(
                {
                    "window": w.index,
                    "classes": w.classes,
                    "rows": {"train": int(len(w.y_train)), "test": int(len(w.y_test))},
                    "class_counts": {
                        split: {str(c): int(n) for c, n in zip(*np.unique(y, return_counts=True))}
                        for split, y in (("train", w.y_train), ("test", w.y_test))
                    },
                }
            )
        if width is None:
            raise StreamError(f"{name}: the stream has no windows")
        manifest = Manifest(
            name=name,
            num_features=width,
            class_names=class_names,
            windows=entries,
            content_hash=content_hash(staging),
            source=source,
        )
        payload = {
            "name": manifest.name,
            "schema": {"x": {"type": "fixed_size_list<float32>", "size": manifest.num_features}, "y": "int64"},
            "class_names": manifest.class_names,
            "num_windows": manifest.num_windows,
            "windows": manifest.windows,
            "content_hash": manifest.content_hash,
            "source": manifest.source,
            **(extra or {}),
        }
        (staging / MANIFEST).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        _swap_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Replace `out_dir` by `staging` with renames only; the old stream survives until then."""
    backup = None
    if out_dir.exists():
        backup = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, backup)
    os.replace(staging, out_dir)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def remove_other_streams(streams_dir: Path, keep: str) -> list[str]:
    """data/streams/ is the prepare stage's output and DVC keeps it between runs (so a bad
    params.yaml never loses the stream there): once the configured stream is written, the
    streams prepare wrote under other names (folders with a manifest) go."""
    gone = sorted(p.name for p in Path(streams_dir).iterdir() if p.is_dir() and p.name != keep and (p / MANIFEST).is_file())
    for name in gone:
        shutil.rmtree(Path(streams_dir) / name)
    return gone


def read_manifest(root: Path) -> Manifest:
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise StreamError(f"{path}: manifest not found (run the prepare stage: `dvc repro prepare`)")
    try:
        raw = json.loads(path.read_text())
        return Manifest(
            name=raw["name"],
            num_features=int(raw["schema"]["x"]["size"]),
            class_names=list(raw["class_names"]),
            windows=list(raw["windows"]),
            content_hash=raw["content_hash"],
            source=raw.get("source", {}),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise StreamError(f"{path}: malformed manifest ({type(error).__name__}: {error})") from None


def read_window(root: Path, manifest: Manifest, split: str, window: int) -> tuple[np.ndarray, np.ndarray]:
    """One partition as (x float32 [n, d], y int64 [n]), checked against the data contract."""
    path = partition_path(Path(root), split, window)
    if not path.is_file():
        raise StreamError(f"{path}: partition missing (stream has {manifest.num_windows} windows)")
    try:
        frame = pl.read_parquet(path)
    except Exception as error:  # polars raises several types for corrupt files
        raise StreamError(f"{path}: unreadable parquet ({type(error).__name__}: {str(error).splitlines()[0]})") from None
    for column in ("x", "y"):
        if column not in frame.columns:
            raise StreamError(f"{path}: column '{column}' missing; columns present: {frame.columns}")
    x_type, y_type = frame.schema["x"], frame.schema["y"]
    if x_type != pl.Array(pl.Float32, manifest.num_features):
        raise StreamError(
            f"{path}: column 'x' has type {x_type}, expected Array(Float32, {manifest.num_features})"
        )
    if y_type != pl.Int64:
        raise StreamError(f"{path}: column 'y' has type {y_type}, expected Int64")
    x = frame["x"].to_numpy()
    y = frame["y"].to_numpy()
    bad = np.flatnonzero((y < 0) | (y >= manifest.num_classes))
    if bad.size:
        raise StreamError(
            f"{path}: column 'y' row {bad[0]}: label {y[bad[0]]} outside 0..{manifest.num_classes - 1}"
        )
    if not np.isfinite(x).all():
        rows = int((~np.isfinite(x)).any(axis=1).sum())
        raise StreamError(f"{path}: column 'x' has NaN or infinite values in {rows} rows")
    return np.array(x, dtype=np.float32, order="C"), y.astype(np.int64)  # writable copies for torch
