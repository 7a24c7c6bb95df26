"""Benchmark: the `pretrain` and `stream` flows against a bare PyTorch script doing identical
work (benchmarks/bare_loop.py), one process per phase on both sides, interleaved and
repeated in one run so both see the same machine.

    python -m benchmarks.orchestration [--repeats 3] [--pretrain-epochs 100] [--epochs 40]

Prints, and writes to benchmarks/results/orchestration.json:
- wall seconds per phase including process start-up, and their ratio (flows / bare);
- training seconds alone (the flows time their own training loop; the bare script times its
  loop) and samples per second, and their ratio;
- what the flows spend besides training: MLflow calls and seconds, Prefect task runs,
  per window.
The Prefect server is started once beforehand and not counted (./run.sh starts one per run).
The medians over repeats are reported; the accuracies of both sides must agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks._project import copy_repository, prefect_server, timed_run, write_params

RESULTS = Path(__file__).resolve().parent / "results"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pretrain-epochs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=40, help="finetune epochs per window")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS / "orchestration.json")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_repository(Path(tmp) / "repo")
        params = project_params(args.pretrain_epochs, args.epochs, args.threads)
        write_params(root, params)
        with prefect_server(Path(tmp) / "prefect") as env:
            env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}",
                   "PATH": f"{Path(python).parent}:{env['PATH']}"}
            timed_run([python, "-m", "flows.prepare"], root, env)
            stream_dir = root / "data" / "streams" / "bench"
            bare_dir = Path(tmp) / "bare"
            common = ["--stream", str(stream_dir), "--out", str(bare_dir), "--threads", str(args.threads)]
            samples = {}
            rows: dict[str, list[float]] = {k: [] for k in (
                "bare_pretrain_wall", "flow_pretrain_wall", "bare_stream_wall", "flow_stream_wall",
                "bare_pretrain_train", "flow_pretrain_train", "bare_stream_train", "flow_stream_train",
                "flow_mlflow_calls", "flow_mlflow_seconds")}
            for repeat in range(args.repeats):
                wall, out = timed_run([python, "-m", "benchmarks.bare_loop", "pretrain", *common, "--epochs",
                                       str(args.pretrain_epochs), "--lr", "0.002"], root, env)
                bare_pre = json.loads(out.stdout.strip().splitlines()[-1])
                rows["bare_pretrain_wall"].append(wall)
                rows["bare_pretrain_train"].append(bare_pre["train_seconds"])
                wall, _ = timed_run([python, "-m", "flows.pretrain"], root, env)
                info = json.loads((root / "models" / "slow" / "info.json").read_text())
                rows["flow_pretrain_wall"].append(wall)
                rows["flow_pretrain_train"].append(info["seconds"])
                wall, out = timed_run([python, "-m", "benchmarks.bare_loop", "stream", *common, "--epochs",
                                       str(args.epochs), "--lr", "0.001"], root, env)
                bare_stream = json.loads(out.stdout.strip().splitlines()[-1])
                rows["bare_stream_wall"].append(wall)
                rows["bare_stream_train"].append(bare_stream["train_seconds"])
                wall, _ = timed_run([python, "-m", "flows.stream", "--method", "finetune"], root, env)
                summary = json.loads((root / "results" / "methods" / "finetune" / "metrics.json").read_text())
                record = json.loads((root / "results" / "methods" / "finetune" / "seed0" / "metrics.json").read_text())
                rows["flow_stream_wall"].append(wall)
                rows["flow_stream_train"].append(record["seconds_per_window"] * 3)
                rows["flow_mlflow_calls"].append(summary["mlflow_calls"])
                rows["flow_mlflow_seconds"].append(summary["mlflow_seconds"])
                samples = {"pretrain": bare_pre["samples"], "stream": bare_stream["samples"]}
                same = abs(info["pretrain_accuracy"] - bare_pre["accuracies"][0]) < 1e-6 and all(
                    abs(a - b) < 1e-6 for a, b in zip(record["matrix"][-1], bare_stream["matrix"][-1])
                )
                print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rows.items())
                      + f"; identical accuracies: {same}", flush=True)
            tasks = task_runs(env)
    med = {k: statistics.median(v) for k, v in rows.items()}
    windows = 3
    result = {
        "device": bare_pre["device"], "threads": args.threads, "repeats": args.repeats,
        "pretrain_epochs": args.pretrain_epochs, "finetune_epochs": args.epochs, "samples": samples,
        "median": med, "identical_accuracies": same,
        "wall_ratio_pretrain": med["flow_pretrain_wall"] / med["bare_pretrain_wall"],
        "wall_ratio_stream": med["flow_stream_wall"] / med["bare_stream_wall"],
        "wall_ratio_total": (med["flow_pretrain_wall"] + med["flow_stream_wall"]) / (med["bare_pretrain_wall"] + med["bare_stream_wall"]),
        "train_ratio_pretrain": med["flow_pretrain_train"] / med["bare_pretrain_train"],
        "train_ratio_stream": med["flow_stream_train"] / med["bare_stream_train"],
        "train_ratio_total": (med["flow_pretrain_train"] + med["flow_stream_train"]) / (med["bare_pretrain_train"] + med["bare_stream_train"]),
        "task_runs": tasks,
        "mlflow_calls_per_window": med["flow_mlflow_calls"] / windows,
        "mlflow_seconds_per_window": med["flow_mlflow_seconds"] / windows,
    }
    total_samples = samples["pretrain"] + samples["stream"]
    result["throughput"] = {
        "bare_samples_per_s": total_samples / (med["bare_pretrain_train"] + med["bare_stream_train"]),
        "flow_samples_per_s": total_samples / (med["flow_pretrain_train"] + med["flow_stream_train"]),
    }
    result["throughput"]["ratio"] = result["throughput"]["flow_samples_per_s"] / result["throughput"]["bare_samples_per_s"]
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


def print_table(r: dict) -> None:
    m = r["median"]
    print(f"\ndevice {r['device']}, {r['threads']} threads, median of {r['repeats']} interleaved repeats; "
          f"accuracies identical on both sides: {r['identical_accuracies']}")
    print(f"{'':<34}{'bare (s)':>10}{'flows (s)':>11}{'ratio':>8}  target")
    for phase in ("pretrain", "stream"):
        print(f"{phase + ' wall, start-up included':<34}{m[f'bare_{phase}_wall']:>10.2f}{m[f'flow_{phase}_wall']:>11.2f}{r[f'wall_ratio_{phase}']:>8.3f}")
    print(f"{'both phases wall':<34}{m['bare_pretrain_wall'] + m['bare_stream_wall']:>10.2f}"
          f"{m['flow_pretrain_wall'] + m['flow_stream_wall']:>11.2f}{r['wall_ratio_total']:>8.3f}  <= 1.10")
    for phase in ("pretrain", "stream"):
        print(f"{phase + ' training loop':<34}{m[f'bare_{phase}_train']:>10.2f}{m[f'flow_{phase}_train']:>11.2f}{r[f'train_ratio_{phase}']:>8.3f}")
    print(f"{'both training loops':<34}{m['bare_pretrain_train'] + m['bare_stream_train']:>10.2f}"
          f"{m['flow_pretrain_train'] + m['flow_stream_train']:>11.2f}{r['train_ratio_total']:>8.3f}  <= 1.03")
    t = r["throughput"]
    print(f"{'samples/s in training':<34}{t['bare_samples_per_s']:>10.0f}{t['flow_samples_per_s']:>11.0f}{t['ratio']:>8.3f}  >= 0.95")
    print(f"stream flow: {r['mlflow_calls_per_window']:.1f} MLflow calls and {r['mlflow_seconds_per_window']:.2f} s in them per window; "
          f"task runs per flow: {r['task_runs']}")


if __name__ == "__main__":
    main()
