"""Flow: the text stage. The text stream (`text:` in params.yaml; the standard library's
source and prose by default), a byte-level LM pretrained on window 0, one unit per entry
under `text.methods` x seed (fast learning while reading, consolidation between windows) on
the same Dask cluster as the other stages, then the comparison in bits per byte. With
`text.methods: {}` it writes empty results and trains nothing."""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the stage: nothing to run, or its workers' fork server imports their stack meanwhile
    from adapters.fork_server import start_early
    from flows._empty import exit_if_nothing_to_run, no_text_stream

    exit_if_nothing_to_run(sys.argv[1:], lambda params: not params.text.methods, lambda root, _: no_text_stream(root))
    start_early(sys.argv[1:], lambda params: len(params.text.methods) * len(params.text.seeds) > 1)  # as main()

from contextlib import ExitStack
from pathlib import Path

from prefect import flow
from prefect.futures import wait
from rich import box
from rich.console import Console
from rich.table import Table

from adapters import engine
from adapters import mlflow_store as tracking
from components.config import load_params
from components.layout import Layout
from components.runtime import pick_device
from components.workspace import Workspace
from flows._cli import REPO_ROOT
from flows._empty import no_text_stream
from components.text.learners import parse_entry
from tasks.text import HEADLINE, compare_text, pretrain_text, prepare_text, run_text, text_windows


COST_ORDER = {"dynamic_eval": 0, "ttt_lora": 1, "neural_memory": 2, "static": 3}


@flow(name="slow-fast-text")
def text_flow(params_path: str = "params.yaml", root: str = str(REPO_ROOT), in_process: bool = True) -> dict:
    params = load_params(f"{root}/{params_path}")
    if not params.text.methods:  # DVC's outputs exist, empty
        no_text_stream(Path(root))
        return {}
    made = prepare_text(params_path, root)
    pretrain_text(params_path, root, made["content_hash"])
    # Costliest learners first, so that no long unit starts last and runs alone (a gradient
    # step through the GRU costs ~10 forwards per segment; the memory ~1; static none).
    entries = sorted(params.text.methods, key=lambda e: COST_ORDER.get(parse_entry(e, params.text.methods[e]).learner, 0))
    units = [(e, s) for e in entries for s in params.text.seeds]
    uri = tracking.tracking_uri()
    if in_process:
        records = [run_text(e, s, params_path, root, made["content_hash"], uri) for e, s in units]
    else:
        futures = [run_text.submit(e, s, params_path, root, made["content_hash"], uri) for e, s in units]
        wait(futures)
        records = [f.result() for f in futures]
    compared = compare_text(params_path, root, records, made["content_hash"])
    _print(compared)
    return compared


def _print(compared: dict) -> None:
    table = Table(title="text: fast learners, best bpb_fast first (results/text/compare.md; bpb: lower is better)",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("method", no_wrap=True)
    for column in HEADLINE:
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("ms/seg score+learn", justify="right", no_wrap=True)  # timings: this run's, not in results/
    for entry in compared["order"]:
        mean = compared["summaries"][entry]["mean"]
        ms = compared.get("ms_per_segment", {}).get(entry)
        cost = f"{ms['score_ms_per_segment']:.1f}+{ms['learn_ms_per_segment']:.1f}" if ms else "-"
        table.add_row(entry, *(f"{100 * mean[c]:+.1f}%" if c == "gain" else f"{mean[c]:.3f}" for c in HEADLINE), cost)
    console = Console(width=120)
    console.print(table)
    if compared.get("champions"):
        console.print(f"text champion: {compared['champions'][0]} (registry alias 'champion' of "
                      f"slowfast-{compared['name']}; README 'Serving')", soft_wrap=False)


def main(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    params = load_params(f"{root}/{params_path}")
    if params.text.methods:  # a bad corpus or entry is one line before any flow starts or anything is written
        for entry, raw in params.text.methods.items():
            parse_entry(entry, raw, params_path)
        text_windows(params, root)
    # Not open_workspace: the text stage reads neither the classification stream nor its tuning.
    ws = Workspace(params, Layout(Path(root), params.stream.name), pick_device(params.device))
    with ExitStack() as stack:
        units = len(ws.params.text.methods) * len(ws.params.text.seeds)
        runner = engine.units_task_runner(stack, ws) if units > 1 else None
        options = {"task_runner": runner} if runner is not None else {}
        return text_flow.with_options(**options)(params_path=params_path, root=root, in_process=runner is None)


if __name__ == "__main__":
    from flows._cli import run

    run(main, prog="python -m flows.text", description=__doc__)
