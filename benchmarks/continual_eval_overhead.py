"""Cost of continual evaluation: the same methods over the default stream with evaluation
every k steps (params.yaml's evaluation.every_steps) and with evaluation only at window
ends, interleaved in one process so both see the same machine state.

    .venv/bin/python -m benchmarks.continual_eval_overhead [--repeats 3] [--methods finetune lora]

Prints seconds per configuration (median of repeats) and their ratio. Needs the prepared
stream and slow model (`./run.sh` or `dvc repro pretrain`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


from components.methods import load_method
from components.runtime import pick_device
from components.workspace import open_workspace
from components.config import load_params
from components.data.loading import Stream
from components.evaluation import ContinualEvaluator
from components.protocol import absorb_window

ROOT = Path(__file__).resolve().parents[1]


def run_stream(params, stream: Stream, entry: str, every: int) -> float:
    """Wall seconds to absorb every window (fast step + consolidation + evaluation)."""
    evaluator = ContinualEvaluator(stream, every, params.evaluation.subset_rows, seed=0)
    method = load_method(open_workspace("params.yaml", ROOT), entry, seed=0, stream=stream, on_step=evaluator.on_step)
    start = time.perf_counter()
    for k in range(1, stream.num_windows):
        evaluator.start_window(k, method.predictor())
        absorb_window(method, stream, k)
        evaluator.end_window(method.predictor())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["finetune", "lora", "distill", "joint"])
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    device = pick_device(params.device)
    stream = Stream(params.stream_dir(ROOT), device)
    every = params.evaluation.every_steps
    print(f"device {device}, threads {params.threads}, continual evaluation every {every} steps "
          f"on {params.evaluation.subset_rows} rows per window, {args.repeats} repeats (median)")
    print(f"{'method':<10} {'ends only (s)':>14} {'every k (s)':>12} {'ratio':>7}")
    totals = [0.0, 0.0]
    for entry in args.methods:
        run_stream(params, stream, entry, 0)  # warm-up: caches, allocator, lazy imports
        times: dict[int, list[float]] = {0: [], every: []}
        for _ in range(args.repeats):
            for k in (0, every):  # interleaved, so drift in machine load hits both alike
                times[k].append(run_stream(params, stream, entry, k))
        base, cont = statistics.median(times[0]), statistics.median(times[every])
        totals[0] += base
        totals[1] += cont
        print(f"{entry:<10} {base:>14.3f} {cont:>12.3f} {cont / base:>7.3f}")
    print(f"{'all':<10} {totals[0]:>14.3f} {totals[1]:>12.3f} {totals[1] / totals[0]:>7.3f}")


if __name__ == "__main__":
    main()
