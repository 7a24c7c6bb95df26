"""What a user reads: the terminal table, progress lines, figures, what runs record and serve."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from rich.console import Console

from components.comparison import champions, markdown_table, shown_columns
from components.evaluation import EvalPoint
from components.methods import REGISTRY, parse_method_config
from components.plots import continual_curves, headline_bars, progress_line
from flows.report import print_comparison
from tests.test_methods import _method

METHODS = ["joint", "clser", "replay", "ilora", "slca", "error_memory", "l2", "kfpf", "ewc", "finetune", "lwf",
           "fastslow", "lora", "distill"]


def _summaries(fwt: float = 0.0) -> dict:
    out = {}
    for i, name in enumerate(METHODS):
        mean = {"acc": 0.9 - i / 20, "bwt": -0.123456, "fwt": fwt, "forgetting": 0.5, "min_acc": 0.1, "wc_acc": 0.2,
                "fast_state_bytes": 7_390_000.0}
        out[name] = {"mean": mean, "std": {k: 0.012 if k != "fwt" else 0.0 for k in mean}, "seeds": [0, 1, 2]}
    return out


def _compare_json(tmp_path, summaries: dict) -> None:
    records = {
        n: s["mean"] | {f"{c}_std": v for c, v in s["std"].items()} | {"n_seeds": 3, "reference": REGISTRY[n].reference}
        for n, s in summaries.items()
    }
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "compare.json").write_text(json.dumps(records))


def test_terminal_table_fits_120_columns_without_cutting_a_cell(tmp_path):
    _compare_json(tmp_path, _summaries())
    console = Console(width=120, record=True, file=open("/dev/null", "w"))
    assert print_comparison(tmp_path, console)
    text = console.export_text()
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120
    assert "…" not in text and "0.900±0.012" in text and "7216.8 KiB" in text
    assert " fwt " not in text and "fwt is 0 for every method" in text  # left out, and said why
    assert "joint (ref)" in text and "finetune (ref)" in text
    assert lines[-1] == "champion: clser (MLflow registry alias 'champion')"  # joint is a reference


def test_fwt_stays_when_it_is_not_zero_by_construction():
    columns, notes = shown_columns(_summaries(fwt=0.05))
    assert "fwt" in columns and notes == []
    table = markdown_table(_summaries(fwt=0.05), METHODS, {"joint": "upper bound"})
    assert "| fwt |" in table and "(ref) joint: upper bound" in table


def test_reference_methods_are_never_champion_unless_nothing_else_ran():
    references = {name: cls.reference for name, cls in REGISTRY.items()}
    assert references["joint"] and references["finetune"] and not references["replay"]
    assert champions(["joint", "replay", "finetune", "lora"], references) == ["replay", "lora"]
    assert champions(["joint", "finetune"], references) == ["joint", "finetune"]


def test_progress_line_has_a_fixed_width_whatever_the_stream_length():
    short = progress_line(3, 3, 1.5, [0.9, 0.1, 0.5, 0.7])
    assert short.endswith("acc(seen) 0.550  worst w1 0.100") and "[################]" in short
    long_lines = {len(progress_line(k, 208, 0.5, [0.5] * 209)) for k in (1, 50, 208)}
    assert len(long_lines) == 1 and long_lines.pop() < 80


def test_a_stepless_method_gets_a_drawn_panel_and_bars_have_room(tmp_path):
    """error_memory takes no optimizer step: its points all sit at step 0 (an empty panel
    before); it is drawn over evaluation points instead, and says so."""
    import matplotlib.pyplot as plt

    stepless = [EvalPoint(0, w, tuple([0.5] * (w + 1))) for w in (1, 2, 3)]
    stepped = [EvalPoint(s, 1 + s // 10, tuple([0.5] * (2 + s // 10))) for s in range(0, 30, 5)]
    captured = {}
    original = plt.Figure.savefig

    def capture(fig, *args, **kwargs):
        captured["axes"] = [(ax.get_title(), [list(np.asarray(line.get_xdata())) for line in ax.get_lines()]) for ax in fig.axes]
        return original(fig, *args, **kwargs)

    plt.Figure.savefig = capture
    try:
        continual_curves({"error_memory": stepless, "replay": stepped}, tmp_path / "c.png")
    finally:
        plt.Figure.savefig = original
    (title, lines), _ = captured["axes"][:2]
    assert "no optimizer steps" in title
    assert len({x for line in lines for x in line}) > 1  # spread out, not one column at step 0
    headline_bars(_summaries(), ["acc", "bwt"], tmp_path / "bars.png")
    assert (tmp_path / "bars.png").read_bytes().startswith(b"\x89PNG")


def test_the_served_error_memory_carries_no_training_rows(tiny_root):
    method, stream = _method(tiny_root, "error_memory", raw={"capacity": 50})
    method.learn_window(stream.window(1))
    served = method.predictor().state_dict()
    assert not [k for k in served if k.endswith((".x", ".y"))], sorted(served)
    assert method.state_dict()["memory"]["x"].shape[0] == 50  # the method's own state keeps them (consolidation)


def test_runs_record_only_the_knobs_a_method_uses():
    memory = REGISTRY["error_memory"]
    unused = memory.used_config(parse_method_config("error_memory", {}))
    assert "lr" not in unused and "epochs" not in unused and "capacity" in unused
    retraining = memory.used_config(parse_method_config("error_memory", {"consolidate_every": 2}))
    assert retraining["lr"] == 0.001 and "epochs" in retraining
    assert "lr" in REGISTRY["lora"].used_config(parse_method_config("lora", {}))


def test_class_probabilities_sum_to_one_for_logits_and_log_probabilities():
    from components.models import ClassProbabilities

    logits = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    for predictor in (logits, torch.nn.Sequential(logits, torch.nn.LogSoftmax(dim=1))):
        out = ClassProbabilities(predictor)(x)
        torch.testing.assert_close(out.sum(1), torch.ones(5))
        assert torch.equal(out.argmax(1), logits(x).argmax(1))


def test_dvc_git_hint_folds_into_one_line():
    dvc_out = ("Updating lock file 'dvc.lock'\n\nTo track the changes with git, run:\n\n\tgit add dvc.lock results/x\n\n"
               "To enable auto staging, run:\n\n\tdvc config core.autostage true\nUse `dvc push` to send your updates.\n")
    folded = subprocess.run([sys.executable, "scripts/fold_dvc_hints.py"], input=dvc_out, capture_output=True,
                            text=True, check=True).stdout
    assert folded.splitlines() == ["Updating lock file 'dvc.lock'", "",
                                   "To keep these results, commit them: git add dvc.lock results/x",
                                   "Use `dvc push` to send your updates."]


@pytest.mark.parametrize("value", [0.9, 1 / 3, 0.0])
def test_accuracy_is_exact_not_float32_noise(value):
    from components.training import accuracy

    n = 300
    correct = round(value * n)
    y = torch.zeros(n, dtype=torch.long)
    y[correct:] = 1
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([1.0, 0.0]))  # always predicts class 0
    assert accuracy(model, torch.zeros(n, 2), y) == correct / n
    assert np.float32(0.9).item() != 0.9  # what a float32 mean would have logged


def test_a_long_stream_logs_a_fixed_number_of_values_per_window():
    """Past 16 windows a window adds fixed summaries to its run, not a value per window
    (T^2 values made tracking cost more than training on a 200-window stream)."""
    from components.progress import WindowRecord
    from components.summary import window_points

    def record(window: int, total: int) -> WindowRecord:
        accuracies = [0.5 + j / 1000 for j in range(total)]
        points = [{"step": s, "window": window, "accuracies": accuracies[: window + 1]} for s in (10, 20, 30)]
        summary = {"seconds": 1.0, "acc_seen": 0.5, **{f"acc_w{j}": a for j, a in enumerate(accuracies)}}
        return WindowRecord(window, accuracies, points, 30, summary, {"train": [0.1]}, 100)

    def values(points) -> int:
        return sum(len(metrics) for _, metrics in points)

    long = [values(window_points(record(k, 200), [], 200)) for k in (2, 100, 199)]
    assert long[0] == long[1] == long[2] < 20
    scalars = window_points(record(100, 200), [], 200)[0][1]
    assert scalars["acc_new"] == 0.6 and scalars["acc_worst"] == 0.5 and not any(k[5:].isdigit() for k in scalars)
    short = window_points(record(2, 4), [], 4)
    assert {f"acc_w{j}" for j in range(4)} <= set(short[0][1]) and "cl_acc_w1" in short[2][1]
    # a long stream's window logs no system figures (in the seed's summary), a short one's does
    system = {"window/train_rows", "window/samples_per_second", "window/peak_memory_mb", "window/fast_state_bytes"}
    busy = {"seconds": 1.0, "samples_per_second": 10.0, "peak_memory_mb": 5.0, "fast_state_bytes": 8.0}
    assert not (system | {"seconds"}) & set(window_points(replace(record(100, 200), summary=busy), [], 200)[0][1])
    assert (system | {"seconds"}) <= set(window_points(replace(record(2, 4), summary=busy), [], 4)[0][1])
    # evaluated only at its start and end (evaluation.every_steps: 0), a long stream's window
    # logs no continual curve (those points are the matrix's and the window's acc_new); a short one does
    def ends(window: int) -> list[dict]:
        return [{"step": s, "window": window, "accuracies": [0.5] * (window + 1)} for s in (10, 30)]

    assert [m for _, m in window_points(replace(record(100, 200), points=ends(100)), [], 200)
            if any(k.startswith("cl_acc") for k in m)] == []
    assert any("cl_acc_w2" in m for _, m in window_points(replace(record(2, 4), points=ends(2)), [], 4))
    assert any("cl_acc_new" in m for _, m in window_points(record(100, 200), [], 200))  # points inside: kept


def test_a_long_streams_run_gets_the_mean_stability_gap_not_one_column_per_window():
    from components.summary import logged_summary

    metrics = {"acc": 0.5, "gap_depth": 0.1, **{f"gap_depth_w{k}": 0.1 for k in range(1, 200)},
               **{f"gap_recovery_steps_w{k}": 3.0 for k in range(1, 200)}}
    assert logged_summary(metrics, 200) == {"acc": 0.5, "gap_depth": 0.1}
    assert logged_summary(metrics, 4) == metrics
