"""The comparison over methods: seed aggregation, ranking, and the table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from components.metrics import HIGHER_IS_BETTER

# Direction of "better" for every headline metric.
# What the inputs determine: results/compare.json, compare.md and headline.csv (DVC) hold
# these; timings (seconds_per_window) are shown by the terminal report and MLflow only.
COLUMNS = ["acc", "bwt", "fwt", "forgetting", "min_acc", "wc_acc", "fast_state_bytes"]
HEADERS = {"seconds_per_window": "s/window", "fast_state_bytes": "fast state"}
# The compact per-method metrics file (results/metrics/<method>.json) that `dvc metrics show`
# and `dvc exp show` print: one row per method, these columns, means over seeds.
HEADLINE = ["acc", "bwt", "forgetting", "min_acc", "wc_acc"]
FWT_IS_ZERO = ("fwt is 0 for every method and seed, so it is left out: each window brings classes the model "
               "was never trained on, so no method can score on them before their window (forward transfer "
               "is 0 by construction on a class-incremental stream)")


def shown_columns(summaries: Mapping[str, Mapping]) -> tuple[list[str], list[str]]:
    """(the table's columns, notes on those left out): FWT goes when it is exactly 0 for every
    method and seed, which a class-incremental stream guarantees."""
    if all(s["mean"]["fwt"] == 0.0 and s["std"]["fwt"] == 0.0 for s in summaries.values()):
        return [c for c in COLUMNS if c != "fwt"], [FWT_IS_ZERO]
    return list(COLUMNS), []


def champions(order: Sequence[str], references: Mapping[str, str]) -> list[str]:
    """Methods that can be crowned, best first: reference points (joint, finetune) are
    compared but never deployed. When every method is a reference, all of them."""
    deployable = [name for name in order if not references.get(name)]
    return deployable or list(order)


def labelled(name: str, references: Mapping[str, str]) -> str:
    return f"{name} (ref)" if references.get(name) else name


def aggregate_seeds(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (0 for one seed) of every numeric metric."""
    def numeric(run: Mapping) -> set[str]:
        return {k for k, v in run.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    keys = sorted(set.intersection(*map(numeric, per_seed)))  # e.g. a recovery that some seeds never make
    values = {k: np.array([float(run[k]) for run in per_seed]) for k in keys}
    return {
        "mean": {k: float(v.mean()) for k, v in values.items()},
        "std": {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()},
    }


def rank_methods(means: Mapping[str, Mapping[str, float]], metric: str) -> list[str]:
    """Method names from best to worst by the mean of `metric` (ties broken by name)."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"cannot rank by '{metric}'; choose one of {sorted(HIGHER_IS_BETTER)}")
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
    return sorted(means, key=lambda name: (sign * means[name][metric], name))


def format_value(column: str, value: float, std: float | None = None, sep: str = " ± ") -> str:
    if column == "fast_state_bytes":
        return f"{value / 1024:.1f} KiB"
    text = f"{value:.2f}" if column == "seconds_per_window" else (
        f"{value:+.3f}" if column in ("bwt", "fwt") else f"{value:.3f}"
    )
    if std is not None:
        text += f"{sep}{std:.2f}" if column == "seconds_per_window" else f"{sep}{std:.3f}"
    return text


def table_rows(summaries: Mapping[str, Mapping], order: list[str], sep: str = " ± ",
               columns: Sequence[str] = COLUMNS, references: Mapping[str, str] | None = None) -> list[list[str]]:
    """Cells of the table, `mean ± std` when the summaries hold more than one seed."""
    rows = []
    for name in order:
        s = summaries[name]
        several = len(s["seeds"]) > 1
        cells = [format_value(c, s["mean"][c], s["std"][c] if several else None, sep) for c in columns]
        rows.append([labelled(name, references or {})] + cells)
    return rows


def summaries_from_metrics(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, dict]:
    """Summaries in `table_rows`' shape from compare.json (means, `<metric>_std`, `n_seeds`)."""
    return {
        name: {"mean": m, "std": {c: m[f"{c}_std"] for c in COLUMNS}, "seeds": list(range(int(m["n_seeds"])))}
        for name, m in metrics.items()
    }


def markdown_table(summaries: Mapping[str, Mapping], order: list[str], references: Mapping[str, str]) -> str:
    columns, notes = shown_columns(summaries)
    header = "| method | " + " | ".join(HEADERS.get(c, c) for c in columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    rows = ["| " + " | ".join(cells) + " |" for cells in table_rows(summaries, order, columns=columns, references=references)]
    refs = [f"- (ref) {name}: {why}; compared, never champion" for name, why in references.items() if why and name in order]
    return "\n".join([header, rule, *rows, "", *refs, *(f"- {note}" for note in notes)]) + "\n"


def tuning_comparison(summaries: Mapping[str, Mapping], tuned: Mapping[str, str], metric: str) -> list[dict]:
    """Defaults vs tuned, side by side: each default entry's `metric` (mean, std over seeds)
    and rank among the defaults; then the same with every tuned method replaced by its
    tuned entry (`tuned`: entry -> tuned entry), and the rank there. Best tuned first."""
    defaults = [n for n in summaries if n not in set(tuned.values())]
    default_order = rank_methods({n: summaries[n]["mean"] for n in defaults}, metric)
    tuned_order = rank_methods({n: summaries[tuned.get(n, n)]["mean"] for n in defaults}, metric)
    rows = []
    for name in tuned_order:
        chosen = summaries[tuned.get(name, name)]
        rows.append({
            "method": name, "tuned": name in tuned,
            "default": summaries[name]["mean"][metric], "default_std": summaries[name]["std"][metric],
            "default_rank": default_order.index(name) + 1,
            "with_tuning": chosen["mean"][metric], "with_tuning_std": chosen["std"][metric],
            "tuned_rank": tuned_order.index(name) + 1,
        })
    return rows


def tuning_markdown(rows: Sequence[Mapping], metric: str, stream: str, tuning_stream: str, trials: Mapping[str, int]) -> str:
    """The side-by-side table: rank moves marked, untuned methods (references) said so."""
    header = f"| method | default {metric} | rank | tuned {metric} | rank | moved |"
    lines = [header, "|---|---|---|---|---|---|"]
    for r in rows:
        moved = r["default_rank"] - r["tuned_rank"]
        change = "=" if moved == 0 else (f"up {moved}" if moved > 0 else f"down {-moved}")
        tuned = format_value(metric, r["with_tuning"], r["with_tuning_std"]) if r["tuned"] else "(not tuned)"
        lines.append(f"| {r['method']} | {format_value(metric, r['default'], r['default_std'])} | {r['default_rank']} | "
                     f"{tuned} | {r['tuned_rank']} | {change} |")
    budget = ", ".join(f"{m} {n}" for m, n in trials.items())
    note = (f"Both evaluated on `{stream}`; tuned hyperparameters were chosen on `{tuning_stream}`, which shares "
            f"no row with it (trials per method: {budget}). A method's tuned rank is among the defaults of the "
            "methods not tuned and the tuned versions of the others.")
    return "\n".join(lines) + "\n\n" + note + "\n"
