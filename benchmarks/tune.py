"""The tune stage on the default params (issue "a comparison you can trust"): trials per
method, the stage's wall time on this machine's cores with `parallel.workers` workers, what
each trial costs beyond its training and evaluation, and how far the pruner cut.

    python -m benchmarks.tune [--trials N] [--workers W]

Runs in a throwaway copy of the repository (prepare, then the tune stage twice: the second
run finds every study finished and must tune nothing). The fixed cost per trial is read
from the trial records in the Optuna storage and the MLflow child runs: (stage wall x
workers - the trials' own training and evaluation) / trials, and per trial inside the worker
(its task's seconds minus its training and evaluation). Prints numbers, asserts nothing."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
from pathlib import Path

import yaml

from benchmarks._project import REPO, copy_repository, prefect_server, timed_run, write_params


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tune", description=__doc__)
    parser.add_argument("--trials", type=int, default=None, help="trials per method (default: params.yaml's)")
    parser.add_argument("--workers", type=int, default=None, help="Dask workers (default: params.yaml's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slowfast-tune-bench-") as tmp:
        root = copy_repository(Path(tmp) / "repo")
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        if args.trials:
            params["tune"]["trials"] = args.trials
        if args.workers is not None:
            params["parallel"]["workers"] = args.workers
        write_params(root, params)
        python = str(REPO / ".venv" / "bin" / "python")
        with prefect_server(Path(tmp) / "prefect") as env:
            env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
            timed_run([python, "-m", "flows.prepare"], root, env)
            wall, first = timed_run([python, "-m", "flows.tune"], root, env)
            again, second = timed_run([python, "-m", "flows.tune"], root, env)
        chosen = json.loads((root / "results" / "tune" / "chosen.json").read_text())["methods"]
        line = next(x for x in first.stdout.splitlines() if x.startswith("[tune]") and "fixed cost" in x)
        trials = sum(c["trials"] for c in chosen.values())
        pruned = sum(c["pruned"] for c in chosen.values())
        print(f"methods tuned: {len(chosen)}; trials per method: {params['tune']['trials']}; "
              f"workers: {params['parallel']['workers']} on this machine")
        print(f"tune stage wall (process start to end, tuning stream prepared and pretrained): {wall:.1f} s")
        print(f"trials: {trials}, pruned {pruned} ({100 * pruned / max(trials, 1):.0f} %)")
        print(f"flow's own figure: {line}")
        print(f"second run (every study finished: nothing tuned): {again:.1f} s; "
              f"kept lines: {sum('finished earlier: kept' in x for x in second.stdout.splitlines())}")
        seconds = [float(s) for s in re.findall(r"after \d+ window\(s\), ([\d.]+) s", first.stdout)]
        if seconds:
            print(f"trial seconds inside the worker: median {statistics.median(seconds):.2f}, max {max(seconds):.2f}")
        inside = _inside_worker(root, params["stream"]["name"])
        if inside:
            print(f"fixed cost inside the worker per trial (task seconds - training and evaluation): median "
                  f"{statistics.median(inside):.3f} s, max {max(inside):.3f} s over {len(inside)} trials")


def _inside_worker(root: Path, stream: str) -> list[float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"{stream}-tuning")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], "tags.phase = 'tune' and metrics.duration_seconds >= 0",
                              max_results=5000)
    return [r.data.metrics["duration_seconds"] - r.data.metrics["work_seconds"] for r in runs]


if __name__ == "__main__":
    main()
