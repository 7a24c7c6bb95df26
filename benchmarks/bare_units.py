"""The stream stage's units as a plain script: the same methods, seeds, windows, continual
evaluation and thread count on a pool of worker processes, with no Prefect, no Dask, no
MLflow and no checkpoints on disk. The baseline benchmarks/parallel.py holds the stage to.

    python -m benchmarks.bare_units --root DIR --workers 2 [--threads 1]

Prints one JSON line: wall seconds (process start-up included is the caller's to measure),
seconds of work per unit and each unit's final accuracy matrix, which must equal the stage's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor


def run_unit(root: str, entry: str, seed: int) -> dict:
    """What tasks/stream.py run_unit computes for one unit, state handed over in memory."""
    from components.evaluation import ContinualEvaluator, evaluate_windows
    from components.methods import load_method
    from components.protocol import absorb_window
    from components.runtime import window_seed
    from components.workspace import open_workspace

    start, started = time.perf_counter(), time.time()
    ws = open_workspace("params.yaml", root)
    e = ws.params.evaluation
    rows = [evaluate_windows(load_method(ws, entry, seed=seed).predictor(), ws.stream)]
    state, step = None, 0
    for k in range(1, ws.stream.num_windows):
        evaluator = ContinualEvaluator(ws.stream, e.every_steps, e.subset_rows, seed, step=step, prequential=e.prequential)
        method = load_method(ws, entry, seed=window_seed(seed, k), state=state,
                             on_step=evaluator.on_step, before_step=evaluator.before_step)
        evaluator.start_window(k, method.predictor())
        result = absorb_window(method, ws.stream, k)
        evaluator.end_window(method.predictor())
        state, step = method.state_dict(), evaluator.step
        rows.append(result.accuracies)
    return {"entry": entry, "seed": seed, "seconds": time.perf_counter() - start, "matrix": rows,
            "started": started, "ended": time.time()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from components.workspace import open_workspace

    p = open_workspace("params.yaml", args.root).params
    units = [(entry, seed) for entry in p.methods for seed in p.seeds]
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        done = list(pool.map(run_unit, [args.root] * len(units), *zip(*units)))
    print(json.dumps({"wall": time.perf_counter() - start, "units": done}))


if __name__ == "__main__":
    main()
