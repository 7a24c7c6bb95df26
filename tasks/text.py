"""Tasks of the text stage: the corpus and its manifest, the byte LM pretrained on window 0,
one unit per text entry x seed (components/text/protocol.py), and the comparison in bpb
(lower is better). Recorded in MLflow (experiment `text.name`) and under results/text/."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

from distributed.worker import print as say
from prefect import task
from prefect.cache_policies import NO_CACHE

from adapters import mlflow_store as tracking
from components.checkpoint import load_state, save_json, save_state
from components.config import Params, TextParams, load_params
from components.progress import fingerprint, stage_code_digest
from components.runtime import configure_torch
from components.text.corpus import (
    DEFAULT_WINDOWS, TextWindow, build_windows, file_order_documents, split_windows, table_documents,
)
from components.text.learners import parse_entry
from components.text.lm import LN2, ByteLM, pretrain_lm
from components.text.plots import bpb_by_position, bpb_heatmap
from components.text.protocol import build_slow, run_text_unit, summarize_seeds
from components.text.serving import COLUMNS, spec_of

TIMINGS = ("score_ms_per_segment", "learn_ms_per_segment")
HEADLINE = ["bpb_fast", "bpb_static", "gain", "final_bpb", "forgetting_bpb", "retention_bpb"]


def _params(params_path: str, root: str) -> Params:
    return load_params(Path(root) / params_path)


def _out(root: str, params: Params) -> Path:
    return Path(root) / "results" / "text"


def _run_record(root: str, params: Params, entry: str, seed: int) -> Path:
    """What a unit did that its inputs do not determine (its MLflow run, timings): outside
    every DVC output, like the classification stages' run records."""
    return Path(root) / ".slowfast" / "runs" / "text" / params.text.name / entry / f"seed{seed}.json"


def model_dir(root: str) -> Path:
    """models/text: the byte LM (a DVC output of the text stage, kept between runs)."""
    return Path(root) / "models" / "text"


def text_windows(params: Params, root: str) -> list[TextWindow]:
    """The text stream's windows: built in, your files by glob, or your table's rows."""
    t = params.text
    cut = {"test_share": t.test_share, "seed": params.seed, "min_bytes": t.segment, "max_test_docs": t.test_docs,
           "max_doc_bytes": t.doc_bytes}
    raw = Path(root) / "data" / "raw"
    if t.corpus == "table":
        table = t.table
        return split_windows(table_documents(raw / table.path, table.text_column, table.window_column,
                                             table.name_column, inside=raw), **cut)
    if t.corpus == "file_order":
        return split_windows(file_order_documents(t.file_order.glob, t.file_order.windows, raw), **cut,
                             locate=lambda where, document: str(raw / document.name))
    if t.corpus == "files":
        return build_windows(tuple((w.name, w.glob) for w in t.windows), raw, **cut)
    return build_windows(DEFAULT_WINDOWS, None, **cut)


def manifest(windows: list[TextWindow], name: str) -> dict:
    """Documents, bytes and the content hash of what the units read."""
    digest = hashlib.sha256()
    listing = []
    for w in windows:
        for split, docs in (("train", w.train), ("test", w.test)):
            for d in docs:
                digest.update(f"{w.index}/{split}/{d.name}\0".encode() + hashlib.sha256(d.data).digest())
        listing.append({"window": w.index, "name": w.name, "documents": {"train": len(w.train), "test": len(w.test)},
                        "bytes": {"train": sum(len(d.data) for d in w.train), "test": sum(len(d.data) for d in w.test)},
                        "test_documents": [d.name for d in w.test]})
    return {"name": name, "content_hash": digest.hexdigest(), "windows": listing}


@task(name="prepare-text", cache_policy=NO_CACHE)
def prepare_text(params_path: str, root: str) -> dict:
    params = _params(params_path, root)
    for entry, raw in params.text.methods.items():
        parse_entry(entry, raw, params_path)  # every entry checked before anything trains
    windows = text_windows(params, root)
    made = manifest(windows, params.text.name)
    save_json(made, _out(root, params) / "manifest.json")
    sizes = ", ".join(f"{w['name']} {w['documents']['train']}+{w['documents']['test']} docs" for w in made["windows"])
    print(f"[text] {params.text.name}: {len(windows)} windows ({sizes}); hash {made['content_hash'][:12]}", flush=True)
    return made


@task(name="pretrain-text-lm", cache_policy=NO_CACHE)
def pretrain_text(params_path: str, root: str, content_hash: str) -> str:
    """models/text/model.pt pretrained on window 0, unless the one there was made from the
    same corpus, settings and code (models/text is kept between runs)."""
    params = _params(params_path, root)
    t = params.text
    key = fingerprint(content_hash, t.width, t.hidden, t.pretrain_steps, t.pretrain_lr, params.seed,
                      stage_code_digest("text"))
    info_path = model_dir(root) / "info.json"
    if info_path.is_file() and json.loads(info_path.read_text()).get("key") == key:
        print("[text] slow model unchanged since it was pretrained: kept", flush=True)
        return key
    windows = text_windows(params, root)
    generator = configure_torch(1, params.seed)
    model = build_slow(t.width, t.hidden)
    began = time.perf_counter()
    losses = pretrain_lm(model, windows[0].train_bytes, t.pretrain_steps, lr=t.pretrain_lr, generator=generator)
    save_state(model.state_dict(), model_dir(root) / "model.pt")
    save_json({"key": key, "loss_bpb": [x / LN2 for x in losses]}, info_path)
    print(f"[text] byte LM ({sum(p.numel() for p in model.parameters()):,} parameters) pretrained on "
          f"{windows[0].name} in {time.perf_counter() - began:.0f} s", flush=True)
    return key


@task(name="run-text-unit", cache_policy=NO_CACHE)
def run_text(entry: str, seed: int, params_path: str, root: str, content_hash: str, tracking_uri: str = "") -> dict:
    """One entry x seed over the text stream, with its MLflow run."""
    if tracking_uri:
        tracking.use_store(tracking_uri)
    params = _params(params_path, root)
    t, raw = params.text, params.text.methods[entry]
    config = parse_entry(entry, raw, params_path)
    windows = text_windows(params, root)
    configure_torch(params.threads, seed)
    slow = build_slow(t.width, t.hidden, load_state(model_dir(root) / "model.pt"))
    run_id = tracking.start_run(
        t.name, f"{entry}-seed{seed}", tags={"phase": "text", "method": entry, "learner": config.learner,
                                             "seed": str(seed), "stream_hash": content_hash},
        params={"method": entry, **{f"method.{k}": v for k, v in config.model_dump().items()}, "seed": seed,
                "segment": t.segment, "consolidation": t.consolidation, "consolidate_bytes": t.consolidate_bytes,
                "replay_bytes": t.replay_bytes},
    )

    def on_window(record: dict) -> None:
        say(f"[{entry} seed {seed}] window {record['window']}/{len(windows) - 1} {record['name']:<14} "
            f"bpb static {record['bpb_static']:.3f} fast {record['bpb_fast']:.3f} ({record['gain']:+.1%})", flush=True)
        tracking.log_metrics(run_id, {k: v for k, v in record.items() if isinstance(v, float)}, step=record["window"])

    try:
        result = run_text_unit(slow, windows, entry, raw, seed, t.segment, t.consolidation, t.consolidate_bytes, on_window,
                               replay_bytes=t.replay_bytes)
    except BaseException:
        tracking.end_run(run_id, "FAILED")
        raise
    out = _out(root, params) / "methods" / entry / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    names = [w.name for w in windows]
    (out / "bpb_matrix.csv").write_text("after," + ",".join(names) + "\n" + "\n".join(
        ",".join([label] + [f"{v:.6f}" for v in row]) for label, row in zip(["pretrained", *names[1:]], result.matrix)) + "\n")
    (out / "by_position.csv").write_text("segment,fast,static\n" + "".join(
        f"{k},{f:.6f},{s:.6f}\n" for k, (f, s) in enumerate(zip(result.by_position, result.static_by_position))))
    windows_done = [{k: v for k, v in w.items() if k not in TIMINGS} for w in result.windows]
    record = {"method": entry, "seed": seed, "learner": config.learner, "stream_hash": content_hash,
              **result.metrics, "matrix": result.matrix.tolist(), "windows": windows_done,
              "by_position": result.by_position, "static_by_position": result.static_by_position}
    save_json(record, out / "metrics.json")
    registered = seed == t.seeds[0]  # one registered model per entry, as for the classification methods
    last = len(windows) - 1
    if not registered:
        tracking.log_metrics(run_id, result.metrics, step=last)
    for name in ("bpb_matrix.csv", "by_position.csv"):
        tracking.log_artifact(run_id, out / name)
    # This run's facts (its timings swing with the machine's load; the model version is the
    # registry's): the run record and MLflow keep them, never a DVC output.
    facts: dict = {"mlflow_run_id": run_id, "timings": [{"window": w["window"], **{k: w[k] for k in TIMINGS}}
                                                         for w in result.windows]}
    if registered:  # with its figures, on the run and the model's page; ends the run
        facts["model_version"] = _register(slow, run_id, entry, raw, seed, t, content_hash, last, result.metrics)
    else:
        tracking.end_run(run_id)
    save_json(facts, _run_record(root, params, entry, seed))
    return record | facts | {"ms_per_segment": {k: sum(w[k] for w in result.windows) / len(result.windows)
                                                for k in TIMINGS}}


def registered_text_model(t: TextParams) -> str:
    """The registry's name for the text stream's entries (aliases `champion`, `challenger`)."""
    return tracking.registered_model_name(t.name)


def _register(slow: ByteLM, run_id: str, entry: str, raw: dict, seed: int, t: TextParams,
              content_hash: str, step: int, metrics: dict[str, float]) -> str:
    """The slow model as the stream left it, with the entry's fast learner: a registered
    version that reads documents the way the held-out ones were read."""
    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch) / "slow.pt"
        save_state(slow.state_dict(), state)
        return tracking.log_and_register_text_model(
            run_id, state, spec_of(entry, raw, t.width, t.hidden, t.segment, seed), registered_text_model(t),
            {"method": entry, "seed": str(seed), "stream_hash": content_hash}, COLUMNS, step=step, metrics=metrics)


@task(name="compare-text", cache_policy=NO_CACHE)
def compare_text(params_path: str, root: str, records: list[dict], content_hash: str) -> dict:
    """Mean and std over seeds per entry, best bpb_fast (lowest) first; the table, the DVC
    metrics, the figures and a comparison run in MLflow."""
    params = _params(params_path, root)
    out = _out(root, params)
    entries = list(params.text.methods)
    summaries = {entry: summarize_seeds([r for r in records if r["method"] == entry]) for entry in entries}
    order = sorted(entries, key=lambda e: (summaries[e]["mean"]["bpb_fast"], e))
    save_json({e: summaries[e] for e in order}, out / "compare.json", sort_keys=False)
    for entry in order:  # one small file per entry: `dvc metrics show` prints a short row each
        save_json({k: round(summaries[entry]["mean"][k], 4) for k in HEADLINE}, out / "metrics" / f"{entry}.json",
                  sort_keys=False)
    table = text_table(summaries, order)
    (out / "compare.md").write_text(
        f"Text stream `{params.text.name}` (hash {content_hash[:12]}): fast learners, best bpb_fast (lowest) first; "
        f"mean ± std over seeds {params.text.seeds}.\n\n" + table + "\n" + BPB_NOTES)
    figures = out / "figures"
    names = [w["name"] for w in json.loads((out / "manifest.json").read_text())["windows"]]
    curves = {"static": summaries[order[0]]["static_by_position"]} | {e: summaries[e]["by_position"] for e in order}
    bpb_by_position(curves, params.text.segment, figures / "bpb_by_position.png")
    for entry in order:
        bpb_heatmap(summaries[entry]["matrix_mean"], names, entry, figures / f"bpb_matrix_{entry}.png")
    crowned = _crown(params.text, order, summaries, records)
    run_id = tracking.start_run(params.text.name, "comparison", tags={"phase": "compare", "best": order[0],
                                                                       "champion": crowned[0], "stream_hash": content_hash})
    tracking.log_text(run_id, table, "comparison.md")
    for figure in sorted(figures.iterdir()):
        tracking.log_artifact(run_id, figure, "figures")
    tracking.end_run(run_id)
    timings = {e: {k: sum(r["ms_per_segment"][k] for r in rs) / len(rs) for k in TIMINGS}
               for e in entries if (rs := [r for r in records if r["method"] == e and "ms_per_segment" in r])}
    return {"name": params.text.name, "order": order, "champions": crowned, "summaries": summaries, "table": table,
            "ms_per_segment": timings}


def _crown(t: TextParams, order: list[str], summaries: dict, records: list[dict]) -> list[str]:
    """Point `champion` at the registered version of the entry with the lowest mean bpb_fast,
    `challenger` at the next; each version's description and tags carry its numbers."""
    name = registered_text_model(t)
    versions = {r["method"]: r["model_version"] for r in records if "model_version" in r}
    crowned = [e for e in order if e in versions][:2]
    tracking.crown_versions(name, [
        (alias, versions[entry], _text_version_description(t, entry, alias, summaries[entry]),
         {k: f"{summaries[entry]['mean'][k]:.4f}" for k in HEADLINE})
        for alias, entry in zip(("champion", "challenger"), crowned)])
    return crowned


def _text_version_description(t: TextParams, entry: str, alias: str, summary: dict) -> str:
    mean, std = summary["mean"], summary["std"]
    return (f"{entry} ({summary['learner']}) on {t.name}: {alias} by bpb_fast, lowest first (seed {t.seeds[0]}'s "
            f"model: the slow LM after the last consolidation, with the fast learner). Over seeds {summary['seeds']}: "
            + ", ".join(f"{k} {mean[k]:.3f} ± {std[k]:.3f}" for k in HEADLINE)
            + ". Input: a `text` column, one document per row; output: bytes, bpb_static, bpb_fast, gain per "
              "document (README 'Serving').")


def text_table(summaries: dict, order: list[str]) -> str:
    header = "| method | learner | " + " | ".join(HEADLINE) + " | fast state |"
    lines = [header, "|---|---|" + "---|" * (len(HEADLINE) + 1)]
    for e in order:
        s = summaries[e]
        cells = [(f"{100 * s['mean'][k]:+.1f}% ± {100 * s['std'][k]:.1f}" if k == "gain"
                  else f"{s['mean'][k]:.3f} ± {s['std'][k]:.3f}") for k in HEADLINE]
        lines.append(f"| {e} | {s['learner']} | " + " | ".join(cells) + f" | {s['fast_state_bytes'] / 1024:.1f} KiB |")
    return "\n".join(lines) + "\n"


BPB_NOTES = """- bpb: bits per byte on held-out documents, lower is better. bpb_static: the slow model as it stands before each window;
  bpb_fast: the fast learner reading the same documents prequentially (each segment scored before it is learned from);
  gain = 1 - bpb_fast / bpb_static (higher is better).
- final_bpb: mean over windows of the slow model after the last consolidation; forgetting_bpb: how much worse than its
  best earlier value each earlier window ends (> 0: forgotten, < 0: better than ever); retention_bpb: change on the
  pretrain split (> 0: worse). Every figure but gain: lower is better.
"""
