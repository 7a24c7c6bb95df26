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


def table_rows(summaries: Mapping[str, Mapping], order: list[str], sep: str = " ± ") -> list[list[str]]:
    """Cells of the table, `mean ± std` when the summaries hold more than one seed."""
    rows = []
    for name in order:
        s = summaries[name]
        several = len(s["seeds"]) > 1
        rows.append([name] + [format_value(c, s["mean"][c], s["std"][c] if several else None, sep) for c in COLUMNS])
    return rows


def summaries_from_metrics(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, dict]:
    """Summaries in `table_rows`' shape from compare.json (means, `<metric>_std`, `n_seeds`)."""
    return {
        name: {"mean": m, "std": {c: m[f"{c}_std"] for c in COLUMNS}, "seeds": list(range(int(m["n_seeds"])))}
        for name, m in metrics.items()
    }


def markdown_table(summaries: Mapping[str, Mapping], order: list[str]) -> str:
    header = "| method | " + " | ".join(HEADERS.get(c, c) for c in COLUMNS) + " |"
    rule = "|---|" + "---|" * len(COLUMNS)
    rows = ["| " + " | ".join(cells) + " |" for cells in table_rows(summaries, order)]
    return "\n".join([header, rule, *rows]) + "\n"
