"""Benchmark: does cost stay flat as the stream and the buffers grow?

    python -m benchmarks.scaling [--windows 5 20 80] [--buffers 100 1000 10000]

1. Time per window for streams of 5, 20 and 80 windows (river Agrawal drift, 500 rows per
   window, MLP slow model, `replay`): the fast step (learn_window) and, separately, the
   evaluation after it, which by the protocol's definition (a full row of R: every window's
   test set) grows with the number of windows.
2. Replay time per optimizer step with buffers of 100, 1,000 and 10,000 rows.
3. Memory: the fast state's bytes against the configured buffer and memory sizes after the
   longest stream (replay buffer, error memory ring).
Writes benchmarks/results/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from components.config import Params, StreamParams
from components.methods import load_method
from components.runtime import pick_device
from components.workspace import Layout, Workspace
from components.data.loading import Stream
from components.data.sources import build_stream
from components.data.stream_io import write_stream
from components.evaluation import evaluate_windows

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = 500


def make_stream(root: Path, windows: int) -> Stream:
    spec = StreamParams.model_validate({
        "name": f"scale{windows}", "source": "river-drift", "test_fraction": 0.2,
        "river": {"generator": "agrawal", "concepts": [(k // 5) % 10 for k in range(windows + 1)],
                  "rows_per_window": ROWS, "drift_width": 50},
    })
    prepared = build_stream(spec, root)
    write_stream(root / spec.name, spec.name, prepared.windows, prepared.class_names, {}, prepared.extra)
    return Stream(root / spec.name, pick_device("auto"))


def method_for(stream: Stream, entry: str, raw: dict, seed: int = 0):
    """`entry` over an untrained MLP (cost per window, not accuracy, is measured here)."""
    config = {"epochs": 1, **raw} if entry != "error_memory" else raw
    params = Params.model_validate({"threads": 2, "model": {"kind": "mlp", "hidden": 64}, "methods": {entry: config}})
    workspace = Workspace(params, Layout(stream.root.parent, stream.root.name), stream.device)
    return load_method(workspace, entry, seed=seed, stream=stream, untrained_slow=True)


def per_window(stream: Stream) -> dict:
    method = method_for(stream, "replay", {"buffer_size": 500})
    fast, evaluation = [], []
    for k in range(1, stream.num_windows):
        window = stream.window(k)
        start = time.perf_counter()
        method.learn_window(window)
        middle = time.perf_counter()
        evaluate_windows(method.predictor(), stream)
        fast.append(middle - start)
        evaluation.append(time.perf_counter() - middle)
    return {"windows": stream.num_windows - 1, "fast_ms": statistics.median(fast) * 1e3,
            "fast_ms_last10": statistics.median(fast[-10:]) * 1e3, "eval_ms": statistics.median(evaluation) * 1e3,
            "fast_state_bytes": method.buffer.nbytes(), "buffer_rows": len(method.buffer)}


def replay_step(stream: Stream, buffer: int) -> dict:
    method = method_for(stream, "replay", {"buffer_size": buffer})
    while len(method.buffer) < buffer:  # fill it, as after a long stream
        for k in range(1, stream.num_windows):
            w = stream.window(k)
            method.buffer.add(w.x_train, w.y_train, method.context.generator)
            if len(method.buffer) >= buffer:
                break
    window = stream.window(1)
    steps = -(-len(window.y_train) // method.config.batch_size)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        method.learn_window(window)
        times.append((time.perf_counter() - start) / steps)
    return {"buffer": buffer, "ms_per_step": statistics.median(times) * 1e3, "fast_state_bytes": method.buffer.nbytes(),
            "configured_bytes": buffer * (stream.manifest.num_features * 4 + 8)}


def error_memory_bound(stream: Stream, capacity: int) -> dict:
    method = method_for(stream, "error_memory", {"capacity": capacity, "only_mistakes": False})
    for k in range(1, stream.num_windows):
        method.learn_window(stream.window(k))
    return {"capacity": capacity, "entries": method.memory.size, "offered_rows": (stream.num_windows - 1) * int(ROWS * 0.8),
            "fast_state_bytes": method.fast_state_bytes()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[5, 20, 80])
    parser.add_argument("--buffers", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--json", type=Path, default=RESULTS / "scaling.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    result: dict = {"device": str(pick_device("auto")), "rows_per_window": ROWS}
    with tempfile.TemporaryDirectory() as tmp:
        streams = {w: make_stream(Path(tmp), w) for w in args.windows}
        print(f"device {result['device']}; replay (buffer 500, 1 epoch) on river Agrawal drift, {ROWS} rows per window")
        print(f"{'windows':>8}{'fast step ms/window':>21}{'(last 10)':>11}{'evaluation ms/window':>22}{'buffer bytes':>14}")
        result["windows"] = []
        for w, stream in streams.items():
            row = per_window(stream)
            result["windows"].append(row)
            print(f"{w:>8}{row['fast_ms']:>21.1f}{row['fast_ms_last10']:>11.1f}{row['eval_ms']:>22.1f}{row['fast_state_bytes']:>14,}", flush=True)
        longest = streams[max(streams)]
        print(f"\n{'buffer rows':>12}{'replay ms/step':>16}{'state bytes':>13}{'rows x row bytes':>18}")
        result["replay"] = []
        for b in args.buffers:
            row = replay_step(longest, b)
            result["replay"].append(row)
            print(f"{b:>12,}{row['ms_per_step']:>16.2f}{row['fast_state_bytes']:>13,}{row['configured_bytes']:>18,}", flush=True)
        print(f"\n{'memory capacity':>16}{'entries':>9}{'rows offered':>14}{'state bytes':>13}")
        result["error_memory"] = []
        for capacity in (1000, 4000):
            row = error_memory_bound(longest, capacity)
            result["error_memory"].append(row)
            print(f"{capacity:>16,}{row['entries']:>9,}{row['offered_rows']:>14,}{row['fast_state_bytes']:>13,}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
