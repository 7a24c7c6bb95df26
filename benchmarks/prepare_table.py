"""Benchmark: a user's 1,000,000-row, 50-feature parquet table prepared into a stream.

Prints wall seconds and peak memory of the prepare step (the `table` source plus the
atomic write), next to the input's in-memory size (polars' estimate of the table read
whole), and writes the figures as JSON.

    python -m benchmarks.prepare_table [--rows 1000000] [--features 50] [--json out.json]

The preparation runs in a fresh child process so its peak RSS is its own; the baseline
RSS of that process after imports (Python, numpy, polars) is reported and subtracted.
Peak RSS is the kernel's VmHWM for the child itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks import targets

CHILD = r"""
import json, sys, time
from pathlib import Path
from components.config import StreamParams
from components.data.sources import build_stream
from components.data.stream_io import write_stream

def high_water_kb():  # VmHWM: this process's own peak RSS (ru_maxrss carries the parent's over exec)
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
    return int(line.split()[1])

root, params = Path(sys.argv[1]), json.loads(sys.argv[2])
baseline = high_water_kb()
start = time.perf_counter()
stream = StreamParams.model_validate(params)
prepared = build_stream(stream, root)
manifest = write_stream(root / "streams" / stream.name, stream.name, prepared.windows, prepared.class_names, {}, prepared.extra)
seconds = time.perf_counter() - start
peak = high_water_kb()
print(json.dumps({"seconds": seconds, "baseline_rss_mb": baseline / 1024, "peak_rss_mb": peak / 1024,
                  "windows": manifest.num_windows, "rows_written": sum(w["rows"]["train"] + w["rows"]["test"] for w in manifest.windows)}))
"""


def make_table(path: Path, rows: int, features: int, seed: int = 0) -> None:
    """Float64 features, a string label, timestamps spread over ten days (ten windows of 1d)."""
    rng = np.random.default_rng(seed)
    columns = {f"f{i:02d}": rng.standard_normal(rows) for i in range(features)}
    labels = np.array(["low", "mid", "high"])[rng.integers(0, 3, rows)]
    start = np.datetime64("2024-01-01T00:00:00", "us")
    stamps = start + np.arange(rows, dtype=np.int64) * np.int64(864_000_000_000 // rows)  # ten days
    pl.DataFrame({**columns, "label": labels, "ts": stamps}).write_parquet(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/prepare_table.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table_path = root / "data" / "raw" / "table.parquet"
        table_path.parent.mkdir(parents=True)
        make_table(table_path, args.rows, args.features)
        frame = pl.read_parquet(table_path)
        in_memory_mb = frame.estimated_size("mb")
        file_mb = table_path.stat().st_size / 2**20
        del frame
        params = {
            "name": "bench", "source": "table", "test_fraction": 0.2, "seed": 0,
            "table": {"path": "data/raw/table.parquet", "label": "label", "window": {"timestamp": "ts", "length": "1d"}},
        }
        repo = Path(__file__).resolve().parents[1]
        wall = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(root), json.dumps(params)], cwd=repo, capture_output=True, text=True
        )
        wall = time.perf_counter() - wall
        if out.returncode != 0:
            sys.exit(f"prepare failed: {out.stderr.strip().splitlines()[-1]}")
        child = json.loads(out.stdout.strip().splitlines()[-1])
    used = child["peak_rss_mb"] - child["baseline_rss_mb"]
    result = {
        "rows": args.rows, "features": args.features, "file_mb": round(file_mb, 1),
        "input_in_memory_mb": round(in_memory_mb, 1), "prepare_seconds": round(child["seconds"], 2),
        "process_wall_seconds": round(wall, 2), "baseline_rss_mb": round(child["baseline_rss_mb"], 1),
        "peak_rss_mb": round(child["peak_rss_mb"], 1), "peak_above_baseline_mb": round(used, 1),
        "peak_over_input": round(used / in_memory_mb, 2), "peak_rss_over_input": round(child["peak_rss_mb"] / in_memory_mb, 2),
        "windows": child["windows"], "rows_written": child["rows_written"],
    }
    rows = [
        ("input", f"{args.rows:,} rows x {args.features} features: {file_mb:.0f} MB parquet, {in_memory_mb:.0f} MB in memory"),
        ("prepare (read, validate, cut, write, hash)", f"{child['seconds']:.2f} s  (target < {targets.PREPARE_SECONDS:.0f} s)"),
        ("process incl. imports", f"{wall:.2f} s"),
        ("peak RSS", f"{child['peak_rss_mb']:.0f} MB = {result['peak_rss_over_input']:.2f} x input"),
        ("peak above import baseline", f"{used:.0f} MB = {result['peak_over_input']:.2f} x input  (target < {targets.PREPARE_MEMORY:.0f} x)"),
        ("windows / rows written", f"{child['windows']} / {child['rows_written']:,}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
