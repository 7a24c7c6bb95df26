"""Probe for issue 15: does a unit compute slower off the main thread, or beside an event
loop thread such as a Dask worker's? The same unit (benchmarks/bare_units.run_unit, 1 torch
thread) alternately in the main thread, in a second thread, and in the main thread while an
asyncio loop ticks every 5 ms in another thread (a worker's heartbeats and comms).

    python -m benchmarks.thread_probe [--method finetune] [--repeats 3]

Prints seconds per configuration (the minimum over repeats) and the ratios to the main thread.
"""

from __future__ import annotations

import argparse
import asyncio
import threading

from benchmarks.bare_units import run_unit
from components.layout import REPO_ROOT


def in_thread(method: str) -> float:
    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(run_unit(str(REPO_ROOT), method, 0)))
    worker.start()
    worker.join()
    return out["seconds"]


def beside_a_loop(method: str) -> float:
    stop = threading.Event()

    async def tick() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.005)

    loop_thread = threading.Thread(target=lambda: asyncio.run(tick()))
    loop_thread.start()
    try:
        return run_unit(str(REPO_ROOT), method, 0)["seconds"]
    finally:
        stop.set()
        loop_thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="finetune")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"main thread": [], "second thread": [], "main + loop thread": []}
    run_unit(str(REPO_ROOT), args.method, 0)  # warm-up: imports, data in the page cache
    for _ in range(args.repeats):
        runs["main thread"].append(run_unit(str(REPO_ROOT), args.method, 0)["seconds"])
        runs["second thread"].append(in_thread(args.method))
        runs["main + loop thread"].append(beside_a_loop(args.method))
    base = min(runs["main thread"])
    for name, seconds in runs.items():
        print(f"{name:20s} {min(seconds):6.2f} s  (x{min(seconds) / base:.2f})  all: {[round(s, 2) for s in seconds]}")


if __name__ == "__main__":
    main()
