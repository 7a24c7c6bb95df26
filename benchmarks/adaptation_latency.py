"""Benchmark: how long each method takes to absorb one window of 1,000 samples, and what the
error memory's correction adds to a forward pass.

    python -m benchmarks.adaptation_latency [--rows 1000] [--repeats 5] [--methods lora error_memory]

Methods use their configs from params.yaml. In one process, per method: a warm-up window
(imports such as peft, first-use allocations, the error memory's centring), then the median
of `repeats` absorptions of a window of `rows` training samples, each on a fresh method so
every repeat does the same work. Only `learn_window` is timed (the fast step and the
consolidation), not the evaluation after it. Writes benchmarks/results/adaptation_latency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import targets
from components.methods import entry_config, load_method
from components.runtime import pick_device
from components.workspace import Layout, Workspace
from components.config import StreamParams, load_params
from components.data.loading import Stream, Window
from components.data.mnist1d_source import class_incremental_windows
from components.data.stream_io import write_stream
from components.pretraining import pretrain_slow_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def shrink(window: Window, rows: int) -> Window:
    if len(window.y_train) < rows:
        raise SystemExit(f"window {window.index} has {len(window.y_train)} training rows, fewer than {rows}")
    return Window(window.index, window.classes, window.x_train[:rows], window.y_train[:rows], window.x_test, window.y_test)


def _workspace(params, stream: Stream) -> Workspace:
    return Workspace(params, Layout(stream.root.parent, stream.root.name), stream.device)


def time_method(params, stream: Stream, slow_state: dict, entry: str, window: Window, repeats: int) -> list[float]:
    device = stream.device

    def fresh():
        return load_method(_workspace(params, stream), entry, seed=0, stream=stream, slow_state=slow_state)

    warm = fresh()
    warm.learn_window(shrink(stream.window(1), len(window.y_train)))
    times = []
    for _ in range(repeats):
        method = fresh()
        if entry == "error_memory":  # steady state: the memory is centred at its first window
            method.memory.set_center(warm.memory.center)
        sync(device)
        start = time.perf_counter()
        method.learn_window(window)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


@torch.no_grad()
def correction_overhead(params, stream: Stream, slow_state: dict, batch: int, repeats: int) -> dict:
    """Forward of `batch` rows through the slow model vs through the corrected model with a
    full memory (capacity entries), medians and minima of interleaved repeats."""
    device = stream.device
    method = load_method(_workspace(params, stream), "error_memory", seed=0, stream=stream, slow_state=slow_state)
    slow = method.slow
    method.learn_window(stream.window(1))
    capacity = method.memory.capacity
    while method.memory.size < capacity:  # fill with real keys, as after a long stream
        w = stream.window(1 + method.memory.size % (stream.num_windows - 1))
        feats = torch.cat([slow.features(c) for c in w.x_train.split(2048)])
        method.memory.add(feats, torch.zeros(len(feats), stream.num_classes, device=device), w.x_train, w.y_train)
    corrected = method.predictor().eval()
    slow.eval()
    x = stream.window(2).x_test[:batch]
    plain, fixed = [], []
    for _ in range(10):  # warm-up
        slow(x), corrected(x)
    for _ in range(repeats):
        for model, out in ((slow, plain), (corrected, fixed)):
            sync(device)
            start = time.perf_counter()
            model(x)
            sync(device)
            out.append(time.perf_counter() - start)
    p, c = statistics.median(plain), statistics.median(fixed)
    # the minima too (timeit's advice: noise only adds time); they vary far less between runs
    return {"batch": batch, "memory_entries": method.memory.size, "plain_ms": p * 1e3, "corrected_ms": c * 1e3, "added": c / p - 1,
            "plain_min_ms": min(plain) * 1e3, "corrected_min_ms": min(fixed) * 1e3, "added_min": min(fixed) / min(plain) - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=None, help="default: every entry in params.yaml")
    parser.add_argument("--json", type=Path, default=RESULTS / "adaptation_latency.json")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    device = pick_device(params.device)
    with tempfile.TemporaryDirectory() as tmp:
        spec = StreamParams(name="latency", num_samples=12000, test_fraction=0.2)
        write_stream(Path(tmp) / "s", spec.name, class_incremental_windows(spec), [str(c) for c in range(10)], {})
        stream = Stream(Path(tmp) / "s", device)
        slow, _ = pretrain_slow_model(params.model_copy(update={"pretrain": params.pretrain.model_copy(update={"epochs": 10})}), stream)
        slow_state = {k: v.clone() for k, v in slow.state_dict().items()}
        window = shrink(stream.window(2), args.rows)
        methods = args.methods or list(params.methods)
        print(f"device {device}, {params.threads} threads; seconds to absorb one window of {args.rows} samples "
              f"(learn_window: fast step + consolidation), median of {args.repeats}")
        print(f"{'method':<14}{'median (s)':>11}{'min (s)':>9}{'samples/s':>11}  target")
        result: dict = {"device": str(device), "threads": params.threads, "rows": args.rows, "methods": {}}
        for entry in methods:
            times = time_method(params, stream, slow_state, entry, window, args.repeats)
            median = statistics.median(times)
            epochs = entry_config(params.methods, entry).get("epochs", 1)  # samples seen = rows x epochs
            target = targets.ABSORB_SECONDS.get(entry)
            result["methods"][entry] = {"median_s": median, "min_s": min(times), "times": times, "target_s": target}
            note = f"<= {target * 1e3:.0f} ms" if target and target < 0.1 else (f"<= {target} s" if target else "")
            rate = args.rows * epochs / median
            print(f"{entry:<14}{median:>11.4f}{min(times):>9.4f}{rate:>11.0f}  {note}", flush=True)
        if "error_memory" in params.methods:
            overhead = correction_overhead(params, stream, slow_state, 256, 1000)
            result["error_memory_correction"] = overhead
            print(f"error_memory correction on a {overhead['batch']}-row batch, memory full ({overhead['memory_entries']} entries): "
                  f"plain forward {overhead['plain_ms']:.3f} ms, corrected {overhead['corrected_ms']:.3f} ms, "
                  f"adds {overhead['added']:.1%} (minima: {overhead['added_min']:.1%}; target <= {targets.CORRECTION_ADDED:.0%})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
