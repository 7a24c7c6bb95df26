"""Benchmark: the `pretrain` and `stream` flows against a bare PyTorch script doing identical
work (benchmarks/bare_loop.py), one process per phase on both sides, interleaved and
repeated in one run so both see the same machine.

    python -m benchmarks.orchestration [--repeats 5] [--pretrain-epochs 100] [--epochs 40]

Prints, and writes to benchmarks/results/orchestration.json:
- wall seconds per phase including process start-up, and their ratio (flows / bare);
- training seconds alone (the flows time their own training loop; the bare script times its
  loop) and samples per second, and their ratio;
- the fixed cost per process (wall minus training) on each side, and what part of it
  importing Prefect and MLflow and opening the sqlite store costs on its own (a process that
  does only that, against one that only imports torch);
- what the stream flow spends besides training: MLflow calls and seconds per window (the
  once-per-run model registration counted apart), Prefect task runs.
The Prefect server is started once beforehand and not counted (./run.sh starts one per run).
Ratios are given for the medians and for the minima over repeats; the accuracies of both
sides must agree (a check that the work is the same).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks import targets
from benchmarks._project import copy_repository, prefect_server, timed_run, write_params

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = ("pretrain", "stream")
ESTIMATORS = {"median": statistics.median, "min": min}


def project_params(pretrain_epochs: int, epochs: int, threads: int) -> dict:
    return {
        "seed": 0, "seeds": [0], "device": "auto", "threads": threads,
        "stream": {"name": "bench", "source": "mnist1d", "num_samples": 12000, "test_fraction": 0.2,
                   "pretrain_classes": [0, 1, 2, 3], "window_classes": [[4, 5], [6, 7], [8, 9]], "seed": 42},
        "model": {"kind": "cnn1d", "channels": 32, "hidden": 128},
        "pretrain": {"epochs": pretrain_epochs, "batch_size": 64, "lr": 0.002, "weight_decay": 0.0},
        "methods": {"finetune": {"epochs": epochs, "lr": 0.001}},
        "evaluation": {"every_steps": 0, "subset_rows": 100, "gap_tolerance": 0.01, "prequential": False},
        "compare": {"champion_metric": "acc"},
        "tracking": {"ui_url": "http://127.0.0.1:5000"},
        "parallel": {"workers": 0},  # one process per phase, as the bare script (benchmarks/parallel.py: clusters)
    }


def task_runs(env: dict) -> dict[str, int]:
    """Task runs per flow name, from the Prefect server the flows reported to."""
    import asyncio
    import os

    os.environ["PREFECT_API_URL"] = env["PREFECT_API_URL"]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def count() -> dict[str, int]:
        async with get_client() as client:
            flows = {f.id: f.name for f in await client.read_flows()}
            runs = await client.read_flow_runs()
            out: dict[str, int] = {}
            for run in runs:
                found = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
                out[flows[run.flow_id]] = len(found)
            return out

    return asyncio.run(count())


_IMPORT_TORCH = "import torch, polars"
_IMPORT_STACK = ("import torch, polars, prefect, mlflow; from mlflow import MlflowClient; "
                 "MlflowClient().search_experiments(max_results=1)")


def run_flows(root: Path, env: dict, python: str, rows: dict) -> tuple[dict, dict]:
    """Both flows once; their wall and training seconds and MLflow costs into `rows`."""
    wall, _ = timed_run([python, "-m", "flows.pretrain"], root, env)
    runs = root / ".slowfast" / "runs" / "bench"  # run facts (timings, ids) live beside the results
    info = json.loads((root / "models" / "slow" / "info.json").read_text())
    rows["flows_pretrain_wall"].append(wall)
    rows["flows_pretrain_train"].append(json.loads((runs / "pretrain.json").read_text())["seconds"])
    shutil.rmtree(root / "results" / "methods" / "finetune", ignore_errors=True)  # else kept: nothing to time
    wall, _ = timed_run([python, "-m", "flows.stream", "--method", "finetune"], root, env)
    summary = json.loads((runs / "finetune.json").read_text())
    record = json.loads((root / "results" / "methods" / "finetune" / "seed0" / "metrics.json").read_text())
    record |= json.loads((runs / "finetune" / "seed0.json").read_text())
    rows["flows_stream_wall"].append(wall)
    rows["flows_stream_train"].append(record["seconds_per_window"] * len(record["matrix"][1:]))
    rows["flows_mlflow_calls"].append(summary["mlflow_calls"])
    rows["flows_mlflow_seconds"].append(summary["mlflow_seconds"])
    rows["flows_mlflow_model_seconds"].append(summary["mlflow_model_seconds"])
    return info, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pretrain-epochs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=40, help="finetune epochs per window")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS / "orchestration.json")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_repository(Path(tmp) / "repo")
        write_params(root, project_params(args.pretrain_epochs, args.epochs, args.threads))
        with prefect_server(Path(tmp) / "prefect") as env:
            env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}",
                   "PATH": f"{Path(python).parent}:{env['PATH']}"}
            timed_run([python, "-m", "flows.prepare"], root, env)
            stream_dir = root / "data" / "streams" / "bench"
            bare_dir = Path(tmp) / "bare"
            common = ["--stream", str(stream_dir), "--out", str(bare_dir), "--threads", str(args.threads)]
            rows: dict[str, list[float]] = defaultdict(list)
            same = True
            for repeat in range(args.repeats):
                wall, out = timed_run([python, "-m", "benchmarks.bare_loop", "pretrain", *common, "--epochs",
                                       str(args.pretrain_epochs), "--lr", "0.002"], root, env)
                bare_pre = json.loads(out.stdout.strip().splitlines()[-1])
                rows["bare_pretrain_wall"].append(wall)
                rows["bare_pretrain_train"].append(bare_pre["train_seconds"])
                wall, out = timed_run([python, "-m", "benchmarks.bare_loop", "stream", *common, "--epochs",
                                       str(args.epochs), "--lr", "0.001"], root, env)
                bare_stream = json.loads(out.stdout.strip().splitlines()[-1])
                rows["bare_stream_wall"].append(wall)
                rows["bare_stream_train"].append(bare_stream["train_seconds"])
                info, record = run_flows(root, env, python, rows)
                same = same and abs(info["pretrain_accuracy"] - bare_pre["accuracies"][0]) < 1e-6 and all(
                    abs(a - b) < 1e-6 for a, b in zip(record["matrix"][-1], bare_stream["matrix"][-1]))
                rows["import_torch_wall"].append(timed_run([python, "-c", _IMPORT_TORCH], root, env)[0])
                rows["import_stack_wall"].append(timed_run([python, "-c", _IMPORT_STACK], root, env)[0])
                print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rows.items())
                      + f"; identical accuracies: {same}", flush=True)
            tasks = task_runs(env)
    samples = {"pretrain": bare_pre["samples"], "stream": bare_stream["samples"]}
    windows = len(bare_stream["matrix"])
    result = summarize(rows, samples, windows) | {
        "device": bare_pre["device"], "threads": args.threads, "repeats": args.repeats,
        "pretrain_epochs": args.pretrain_epochs, "finetune_epochs": args.epochs, "samples": samples,
        "identical_accuracies": same, "task_runs": tasks, "raw": dict(rows),
    }
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


def summarize(rows: dict[str, list[float]], samples: dict[str, int], windows: int) -> dict:
    """Ratios under two estimators over the repeats: the median, and the minimum (timeit's
    advice on a shared machine: noise only ever adds time, so the fastest repeat is the
    closest to the cost of the work itself)."""
    total_samples = samples["pretrain"] + samples["stream"]
    out: dict = {}
    for name, estimate in ESTIMATORS.items():
        v = {k: estimate(x) for k, x in rows.items()}
        e: dict = {"values": v}
        for side in ("bare", "flows"):
            e[side] = {
                "wall": v[f"{side}_pretrain_wall"] + v[f"{side}_stream_wall"],
                "train": v[f"{side}_pretrain_train"] + v[f"{side}_stream_train"],
                "fixed_per_process": {ph: v[f"{side}_{ph}_wall"] - v[f"{side}_{ph}_train"] for ph in PHASES},
            }
            e[side]["samples_per_s"] = total_samples / e[side]["train"]
        f, b = e["flows"], e["bare"]
        e["wall_ratio"] = {ph: v[f"flows_{ph}_wall"] / v[f"bare_{ph}_wall"] for ph in PHASES} | {"total": f["wall"] / b["wall"]}
        e["train_ratio"] = {ph: v[f"flows_{ph}_train"] / v[f"bare_{ph}_train"] for ph in PHASES} | {"total": f["train"] / b["train"]}
        e["throughput_ratio"] = f["samples_per_s"] / b["samples_per_s"]
        out[name] = e
    med = out["median"]["values"]
    out["import_cost"] = med["import_stack_wall"] - med["import_torch_wall"]
    out["mlflow_calls_per_window"] = (med["flows_mlflow_calls"] - 1) / windows  # less the one log_model
    out["mlflow_seconds_per_window"] = (med["flows_mlflow_seconds"] - med["flows_mlflow_model_seconds"]) / windows
    out["model_registration_seconds"] = med["flows_mlflow_model_seconds"]
    return out


def print_table(r: dict) -> None:
    md, mn = r["median"], r["min"]
    print(f"\ndevice {r['device']}, {r['threads']} threads, {r['repeats']} interleaved repeats; "
          f"accuracies identical on both sides: {r['identical_accuracies']}")
    print(f"{'':<32}{'bare (s)':>9}{'flows (s)':>10}{'ratio':>7}{'ratio of':>10}  target")
    print(f"{'':<32}{'median':>9}{'median':>10}{'':>7}{'minima':>10}")

    def line(label: str, bare: float, flows: float, ratio: float, ratio_min: float, target: str = "") -> None:
        print(f"{label:<32}{bare:>9.2f}{flows:>10.2f}{ratio:>7.3f}{ratio_min:>10.3f}  {target}")

    for ph in PHASES:
        line(f"{ph} wall, start-up incl.", md["values"][f"bare_{ph}_wall"], md["values"][f"flows_{ph}_wall"],
             md["wall_ratio"][ph], mn["wall_ratio"][ph])
    line("both phases wall", md["bare"]["wall"], md["flows"]["wall"], md["wall_ratio"]["total"], mn["wall_ratio"]["total"], f"<= {targets.WALL_RATIO}")
    for ph in PHASES:
        line(f"{ph} training loop", md["values"][f"bare_{ph}_train"], md["values"][f"flows_{ph}_train"],
             md["train_ratio"][ph], mn["train_ratio"][ph])
    line("both training loops", md["bare"]["train"], md["flows"]["train"], md["train_ratio"]["total"], mn["train_ratio"]["total"], f"<= {targets.TRAIN_RATIO}")
    print(f"{'samples/s in training':<32}{md['bare']['samples_per_s']:>9.0f}{md['flows']['samples_per_s']:>10.0f}"
          f"{md['throughput_ratio']:>7.3f}{mn['throughput_ratio']:>10.3f}  >= {targets.THROUGHPUT_RATIO}")
    for ph in PHASES:
        print(f"{ph + ' fixed cost (wall - train)':<32}{md['bare']['fixed_per_process'][ph]:>9.2f}"
              f"{md['flows']['fixed_per_process'][ph]:>10.2f}")
    print(f"importing prefect + mlflow and opening the sqlite store alone: {r['import_cost']:.2f} s per process "
          f"({md['values']['import_stack_wall']:.2f} s against {md['values']['import_torch_wall']:.2f} s for torch + polars)")
    print(f"stream flow: {r['mlflow_calls_per_window']:.1f} MLflow calls and {r['mlflow_seconds_per_window']:.3f} s in "
          f"them per window, model registration {r['model_registration_seconds']:.2f} s once per run")
    print(f"task runs per flow: {r['task_runs']}")


if __name__ == "__main__":
    main()
