"""Benchmark (issue 15): the stream stage's units on Dask clusters, against the stage as it
was (every unit in one process, 2 torch threads) and a bare script doing the same units on
the same number of worker processes (benchmarks/bare_units.py). All in one run, one machine.

    python -m benchmarks.parallel [--methods finetune replay lwf lora | all] [--seeds 0 1 2] [--windows 200]
        [--rounds 2] [--skip sweep bare load windows]

1. Sweep: a copy of the repository with the default stream and model, `--methods` x
   `--seeds` units, prepared and pretrained once. The stream stage (`python -m flows.stream`,
   process start-up and cluster included; the Prefect server and the loopback MLflow server
   are started beforehand, as ./run.sh does) runs from scratch under: the old way (workers
   0, threads 2), a local cluster of 1 and of 2 workers (1 thread each), a `dask
   scheduler` + 2 `dask worker` processes, and the local 2-worker cluster again (the process
   cluster is compared with the mean of the runs around it); each then once more with
   nothing to run (the stage's own cost: imports, flow, summaries); then the bare script on
   2 processes. Printed: wall, where it went (before the first unit started, while units
   ran and how busy the workers were, after the last ended), units' work (training +
   evaluation), MLflow seconds, calls and retries per unit,
   the fixed cost per unit three ways ((wall x workers - work - MLflow) / units; the same
   less the stage's own cost; inside the worker: unit seconds - work - MLflow), the
   ratios, and whether every configuration gave the same numbers. A process's wall time
   ends when it exits (as DVC waits for a stage), not when a child closes its output.
2. Against the bare script: the stage on the pipeline's cluster and the bare script,
   alternately `--rounds` times in a fresh copy (a drift of the machine's speed falls on
   both); the ratio of their summed walls is the issue's "within 1.15x" figure.
3. Load: one unit of three methods alone, then beside a competing 2-thread PyTorch
   process, at 1 thread (the default now) and at 2 (before).
4. Many windows: `finetune`, 1 seed, over a `--windows`-window stream (river Agrawal, 150
   rows per window, MLP), through the stage with a loopback server: tracking seconds per
   window against training seconds.
Writes benchmarks/results/parallel.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._project import REPO, copy_repository, mlflow_server, prefect_server, timed_run, write_params

RESULTS = Path(__file__).resolve().parent / "results"
COMPETITOR = r"""
import torch, time
torch.set_num_threads(2)
a = torch.randn(384, 384)
while True:
    for _ in range(50):
        a = torch.tanh(a @ a * 0.01)
"""


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / ".slowfast" / "runs").glob("*/*/seed*.json"))]


def _numbers(root: Path) -> dict[str, str]:
    files = sorted((root / "results" / "methods").rglob("*"))
    return {str(p.relative_to(root)): p.read_text() for p in files if p.name in ("metrics.json", "accuracy_matrix.csv")}


def _fresh(prepared: Path, where: Path, params: dict) -> Path:
    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(prepared, where, ignore=shutil.ignore_patterns(".slowfast", "results", "mlflow.db", "mlartifacts"))
    write_params(where, params)
    return where


def sweep(base: Path, env: dict, methods: list[str], seeds: list[int]) -> dict:
    from adapters.dask_cluster import process_cluster

    prepared, params = _prepared(base, env, methods, seeds)
    configs = {
        "before: 1 process, 2 threads": ({"workers": 0}, 2, 1),
        "local cluster, 1 worker": ({"workers": 1}, 1, 1),
        "local cluster, 2 workers": ({"workers": 2}, 1, 2),
    }
    out: dict = {"units": len(methods) * len(seeds), "configs": {}}
    numbers = {}
    for name, (parallel, threads, workers) in configs.items():
        root = _fresh(prepared, base / name.replace(" ", "_").replace(",", "").replace(":", ""),
                      params | {"threads": threads, "parallel": parallel})
        out["configs"][name], numbers[name] = _stage(root, env, workers)
        print(f"{name:34s} {_line(out['configs'][name])}", flush=True)
    with process_cluster(2, base / "cluster-logs", env={"PREFECT_API_URL": env["PREFECT_API_URL"]}) as address:
        name = "scheduler + 2 worker processes"
        root = _fresh(prepared, base / "process_cluster", params | {"parallel": {"scheduler": address}})
        out["configs"][name], numbers[name] = _stage(root, env, 2)
        print(f"{name:34s} {_line(out['configs'][name])}", flush=True)
    # the local cluster once more, right after: the two are compared by the mean of the runs
    # around the process cluster's, so a drift of this machine's speed does not pass for a gap
    name = "local cluster, 2 workers, again"
    root = _fresh(prepared, base / "local_again", params | {"parallel": {"workers": 2}})
    out["configs"][name], numbers[name] = _stage(root, env, 2)
    print(f"{name:34s} {_line(out['configs'][name])}", flush=True)
    # ./run.sh's way: the pipeline's cluster, started before the stage (in ./run.sh while
    # fetch, prepare and pretrain run) and warm when the stage submits its units
    name = "pipeline cluster (./run.sh), 2 workers"
    root = _fresh(prepared, base / "pipeline_cluster", params | {"parallel": {"workers": 2}})
    out["configs"][name], numbers[name] = _stage(root, env, 2, pipeline_cluster=True)
    print(f"{name:34s} {_line(out['configs'][name])}", flush=True)
    out["bare, 2 processes"], bare = _bare(_fresh(prepared, base / "bare", params), env)
    wall = out["bare, 2 processes"]["wall"]
    one_thread = [n for n in numbers if not n.startswith("before")]
    out["identical_across_clusters"] = all(numbers[n] == numbers[one_thread[0]] for n in one_thread)
    stage = base / "local_cluster_2_workers" / "results" / "methods"
    out["bare_matches_stage"] = all(
        json.loads((stage / u["entry"] / f"seed{u['seed']}" / "metrics.json").read_text())["matrix"] == u["matrix"]
        for u in bare["units"])
    c = out["configs"]
    out["ratios"] = {
        "before / local 2 workers (wall)": c["before: 1 process, 2 threads"]["wall"] / c["local cluster, 2 workers"]["wall"],
        "local 2 workers / bare 2 processes (wall)": c["local cluster, 2 workers"]["wall"] / wall,
        "pipeline cluster 2 workers / bare 2 processes (wall)": c["pipeline cluster (./run.sh), 2 workers"]["wall"] / wall,
        "throughput 2 workers / 1 worker": c["local cluster, 1 worker"]["wall"] / c["local cluster, 2 workers"]["wall"],
        "throughput processes / local, 2 workers (mean of the runs before and after)":
            (c["local cluster, 2 workers"]["wall"] + c["local cluster, 2 workers, again"]["wall"]) / 2
            / c["scheduler + 2 worker processes"]["wall"],
    }
    for what, ratio in out["ratios"].items():
        print(f"  {what:78s} {ratio:5.2f}")
    print(f"  same numbers on every 1-thread configuration: {out['identical_across_clusters']}; "
          f"bare script's matrices equal the stage's: {out['bare_matches_stage']}")
    return out


def _prepared(base: Path, env: dict, methods: list[str], seeds: list[int]) -> tuple[Path, dict]:
    """A copy of the repository with `methods` x `seeds` units, its stream prepared and its
    slow model pretrained."""
    prepared = copy_repository(base / "prepared")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["seeds"], params["threads"] = seeds, 1
    params["methods"] = {m: params["methods"][m] for m in (params["methods"] if methods == ["all"] else methods)}
    params["tune"]["methods"] = [m for m in params["tune"]["methods"] if m in methods]
    write_params(prepared, params)
    for stage in ("prepare", "pretrain"):
        timed_run([sys.executable, "-m", f"flows.{stage}"], prepared, env)
    return prepared, params


def _bare(root: Path, env: dict) -> tuple[dict, dict]:
    """benchmarks/bare_units.py on 2 processes: its figures (printed) and its own output."""
    began = time.time()
    wall, done = timed_run([sys.executable, "-m", "benchmarks.bare_units", "--root", str(root), "--workers", "2"], root, env)
    bare = json.loads(done.stdout.strip().splitlines()[-1])
    units = [{"unit_started": u["started"], "unit_ended": u["ended"]} for u in bare["units"]]
    figures = {"wall": wall, "work": sum(u["seconds"] for u in bare["units"])} | _timeline(began, wall, units, 2)
    print(f"{'bare script, 2 processes':34s} wall {wall:6.1f} s  work {figures['work']:6.1f} s  before the first unit "
          f"{figures['before_first_unit']:4.1f} s, units {figures['units_span']:5.1f} s (workers busy "
          f"{figures['workers_busy']:.0%}), after the last {figures['after_last_unit']:4.1f} s", flush=True)
    return figures, bare


def against_bare(base: Path, env: dict, methods: list[str], seeds: list[int], rounds: int) -> dict:
    """The stage on the pipeline's cluster against the bare script, alternately `rounds`
    times, so a drift of this machine's speed falls on both: the issue's 1.15 figure."""
    prepared, params = _prepared(base / "against_bare", env, methods, seeds)
    out: dict = {"units": len(methods) * len(seeds), "rounds": []}
    for k in range(rounds):
        root = _fresh(prepared, base / "against_bare" / f"stage{k}", params | {"parallel": {"workers": 2}})
        stage, _ = _stage(root, env, 2, pipeline_cluster=True)
        print(f"{'pipeline cluster (./run.sh), 2 workers':34s} {_line(stage)}", flush=True)
        bare, _ = _bare(_fresh(prepared, base / "against_bare" / f"bare{k}", params), env)
        out["rounds"].append({"stage": stage, "bare": bare, "ratio": stage["wall"] / bare["wall"]})
        print(f"  round {k + 1}: stage / bare script {stage['wall']:.1f} / {bare['wall']:.1f} s = "
              f"{stage['wall'] / bare['wall']:.2f}", flush=True)
    out["ratio"] = sum(r["stage"]["wall"] for r in out["rounds"]) / sum(r["bare"]["wall"] for r in out["rounds"])
    print(f"  stage / bare script over {rounds} rounds: {out['ratio']:.2f} (target <= 1.15)", flush=True)
    return out


def _stage(root: Path, env: dict, workers: int, pipeline_cluster: bool = False) -> tuple[dict, dict[str, str]]:
    """The stream stage from scratch with the MLflow server ./run.sh would have started, then
    once more with nothing to run: what the stage costs before and after its units
    (start-up, cluster, servers, summaries), so the per-unit figure leaves it out.
    `pipeline_cluster`: on ./run.sh's cluster, started and warm beforehand (its start-up is
    reported apart: ./run.sh overlaps it with the stages before)."""
    from adapters import pipeline_cluster as shared
    from adapters.pipeline_cluster_server import running

    with contextlib.ExitStack() as stack:
        served = stack.enter_context(mlflow_server(root, env))
        warmup = 0.0
        if pipeline_cluster:
            began = time.perf_counter()
            state = root / ".slowfast" / "dask-cluster.json"
            state.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(running(state, root / "params.yaml", served, workers, cwd=root))
            served = served | {shared.ENV: str(state)}
            warmup = time.perf_counter() - began
        began = time.time()
        wall, done = timed_run([sys.executable, "-m", "flows.stream"], root, served)
        if "of its own" in done.stdout:
            raise RuntimeError(f"the stage did not use the pipeline's cluster: {done.stdout[-500:]}")
        numbers = _numbers(root)
        records = _records(root)
        empty, _ = timed_run([sys.executable, "-m", "flows.stream"], root, served)
    return (_summary(wall, empty, records, workers) | _timeline(began, wall, records, workers)
            | ({"cluster_startup_outside": warmup} if pipeline_cluster else {})), numbers


def _timeline(began: float, wall: float, records: list[dict], workers: int) -> dict:
    """Where the stage's wall time went: before its first unit started (imports, flow,
    cluster), while units ran (and how busy the workers were), after the last one ended
    (summaries, shutdown)."""
    first, last = min(r["unit_started"] for r in records), max(r["unit_ended"] for r in records)
    return {"before_first_unit": first - began, "units_span": last - first, "after_last_unit": began + wall - last,
            "workers_busy": sum(r["unit_ended"] - r["unit_started"] for r in records) / (workers * (last - first))}


def _summary(wall: float, empty: float, records: list[dict], workers: int) -> dict:
    work = sum(r["work_seconds"] for r in records)
    mlflow = sum(r["mlflow_seconds"] for r in records)
    registered = [r["mlflow_model_seconds"] for r in records if r.get("model_version")]
    return {"wall": wall, "stage_fixed": empty, "work": work, "mlflow": mlflow, "units": len(records),
            "registrations": len(registered), "registration_seconds": sum(registered),
            "mlflow_calls_per_unit": statistics.mean(r["mlflow_calls"] for r in records),
            "retries": sum(r["mlflow_retries"] for r in records),
            "unit_seconds": sum(r["unit_seconds"] for r in records),
            "fixed_per_unit": (wall * workers - work - mlflow) / len(records),
            "fixed_per_unit_in_worker": (sum(r["unit_seconds"] for r in records) - work - mlflow) / len(records),
            "fixed_per_unit_beyond_stage": ((wall - empty) * workers - work - mlflow) / len(records)}


def _line(s: dict) -> str:
    return (f"wall {s['wall']:6.1f} s (stage alone {s['stage_fixed']:4.1f} s)  work {s['work']:6.1f} s  "
            f"MLflow {s['mlflow']:5.1f} s ({s['mlflow_calls_per_unit']:.1f} calls/unit, {s['retries']} retries; "
            f"{s['registrations']} registrations {s['registration_seconds']:.1f} s)  "
            f"fixed per unit: {s['fixed_per_unit']:.2f} s overall, {s['fixed_per_unit_beyond_stage']:.2f} s beyond "
            f"the stage's own, {s['fixed_per_unit_in_worker']:.2f} s in the worker\n{'':34s} "
            f"before the first unit {s['before_first_unit']:4.1f} s, units {s['units_span']:5.1f} s "
            f"(workers busy {s['workers_busy']:.0%}), after the last {s['after_last_unit']:4.1f} s")


def under_load(base: Path, env: dict, methods: list[str]) -> dict:
    """One bare unit per method (benchmarks/bare_units.run_unit in a fresh process), alone
    and beside a competing 2-thread PyTorch process."""
    root = base / "prepared"
    out = {}
    for threads in (1, 2):
        params = yaml.safe_load((root / "params.yaml").read_text()) | {"threads": threads, "seeds": [0]}
        tdir = _fresh(root, base / f"load{threads}", params)
        for method in methods:
            code = f"from benchmarks.bare_units import run_unit; print(run_unit({str(tdir)!r}, {method!r}, 0)['seconds'])"
            solo = float(timed_run([sys.executable, "-c", code], REPO, env)[1].stdout.split()[-1])
            competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR])
            try:
                time.sleep(2)
                loaded = float(timed_run([sys.executable, "-c", code], REPO, env)[1].stdout.split()[-1])
            finally:
                competitor.kill()
                competitor.wait()
            out[f"{method}, {threads} thread(s)"] = {"solo": solo, "loaded": loaded, "ratio": loaded / solo}
            print(f"{method:10s} {threads} thread(s): solo {solo:6.1f} s  loaded {loaded:6.1f} s  ratio {loaded / solo:5.2f}",
                  flush=True)
    return out


def many_windows(base: Path, env: dict, windows: int) -> dict:
    root = copy_repository(base / "long")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params |= {"seeds": [0], "threads": 1, "parallel": {"workers": 1}}
    params["stream"] = {"name": "long", "source": "river-drift", "test_fraction": 0.2,
                        "river": {"generator": "agrawal", "concepts": [(k // 20) % 10 for k in range(windows + 1)],
                                  "rows_per_window": 150, "drift_width": 20}}
    params["model"] = {"kind": "mlp", "hidden": 64}
    params["pretrain"] = {**params["pretrain"], "epochs": 3}
    params["methods"] = {"finetune": {"epochs": 1, "lr": 0.001}}
    params["tune"]["methods"] = []
    params["evaluation"] = {**params["evaluation"], "every_steps": 0}
    write_params(root, params)
    for stage in ("prepare", "pretrain"):
        timed_run([sys.executable, "-m", f"flows.{stage}"], root, env)
    wall, _ = timed_run([sys.executable, "-m", "flows.stream"], root, env)
    record = _records(root)[0]
    train = record["seconds_per_window"] * windows
    logged = _values_logged(root / "mlflow.db", record["mlflow_run_id"])
    out = {"windows": windows, "wall": wall, "train_seconds": train, "work_seconds": record["work_seconds"],
           "mlflow_seconds": record["mlflow_seconds"], "mlflow_calls": record["mlflow_calls"],
           "model_seconds": record["mlflow_model_seconds"],
           "tracking_ms_per_window": 1000 * (record["mlflow_seconds"] - record["mlflow_model_seconds"]) / windows,
           "values_logged": logged}
    print(f"{windows} windows: training {train:.1f} s, work (training + evaluation) {record['work_seconds']:.1f} s, "
          f"tracking {record['mlflow_seconds'] - record['mlflow_model_seconds']:.1f} s in {record['mlflow_calls']} calls "
          f"({out['tracking_ms_per_window']:.1f} ms per window; model registration {record['mlflow_model_seconds']:.1f} s)")
    print(f"  values logged on the seed's run: {sum(logged.values())} ({sum(logged.values()) / windows:.1f} per window): "
          + ", ".join(f"{k} {n}" for k, n in sorted(logged.items(), key=lambda kv: -kv[1])[:12]))
    return out


def _values_logged(store: Path, run_id: str) -> dict[str, int]:
    """Metric values per key on run `run_id` in sqlite store `store` (each costs the server an insert)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(store)) as db:
        return dict(db.execute("select key, count(*) from metrics where run_uuid = ? group by key", (run_id,)).fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["finetune", "replay", "lwf", "lora"],
                        help="entries under methods: in params.yaml; `all`: every one (the default pipeline's sweep)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--skip", nargs="*", default=[], choices=["sweep", "bare", "load", "windows"])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the stage against the bare script")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="slowfast-parallel-"))
    results: dict = {"cores": os.cpu_count()}
    try:
        with prefect_server(base / "prefect") as env:
            env = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
            if "sweep" not in args.skip:
                # the default pipeline's sweep is kept beside the quicker 4-method one
                results["sweep_all_methods" if args.methods == ["all"] else "sweep"] = sweep(base, env, args.methods, args.seeds)
            if "bare" not in args.skip:
                results["against_bare"] = against_bare(base, env, args.methods, args.seeds, args.rounds)
            if "load" not in args.skip:
                results["load"] = under_load(base, env, ["finetune", "replay", "lwf"] if args.methods == ["all"] else args.methods[:3])
            if "windows" not in args.skip:
                results["windows"] = many_windows(base, env, args.windows)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "parallel.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    kept = {part: value for part, value in earlier.items() if part not in results}  # parts not run keep their last numbers
    path.write_text(json.dumps(kept | results, indent=2))


if __name__ == "__main__":
    main()
