"""Flows of the scheduled loop, one per deployment in prefect.yaml:

- `ingest`: the next window of the stream arrives (after `dvc repro prepare`);
- `fast-adapt`: absorb what has arrived, register a challenger past the quality gate;
  a drift detector (ops.drift) may start a consolidation at once;
- `consolidate`: promote the fast state to champion, or keep the champion and say why;
- `pretrain-slow`: a fresh slow model on everything so far, under the same promotion rule.

Each holds the stream's one concurrency slot for its whole run (adapters/prefect_lock.py).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from components.config import load_params
from tasks import ops
from flows._cli import REPO_ROOT
from adapters.prefect_lock import stream_lock


def _guarded(step: str, params_path: str, root: str, work) -> dict:
    p = load_params(Path(root) / params_path)
    with stream_lock(p.stream.name, p.ops.on_busy, p.ops.lock_lease_seconds) as held:
        if not held:
            print(f"[{step}] skipped: another run holds stream {p.stream.name} (ops.on_busy: skip)", flush=True)
            return {"skipped": True}
        return work()


@flow(name="ingest")
def ingest_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    return _guarded("ingest", params_path, root, lambda: ops.ingest(params_path, root))


@flow(name="fast-adapt")
def fast_adapt_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    def work() -> dict:
        outcome = ops.fast_adapt(params_path, root)
        if outcome["drift"] is not None:  # only set when ops.drift has a detector
            outcome["consolidation"] = ops.consolidate(params_path, root, trigger="drift")
        return outcome

    return _guarded("fast-adapt", params_path, root, work)


@flow(name="consolidate")
def consolidate_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    return _guarded("consolidate", params_path, root, lambda: ops.consolidate(params_path, root))


@flow(name="pretrain-slow")
def retrain_slow_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    return _guarded("pretrain-slow", params_path, root, lambda: ops.retrain_slow(params_path, root))


FLOWS = {"ingest": ingest_flow, "fast-adapt": fast_adapt_flow, "consolidate": consolidate_flow,
         "pretrain-slow": retrain_slow_flow}

if __name__ == "__main__":
    import sys

    from flows._cli import run

    step = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in FLOWS else None
    if step is None:
        sys.exit(f"usage: python -m flows.ops {{{','.join(FLOWS)}}} [--params params.yaml]")
    run(FLOWS[step])
