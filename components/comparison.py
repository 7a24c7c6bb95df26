"""The comparison table over methods, and which method wins by a chosen metric."""

from __future__ import annotations

from collections.abc import Mapping

# Direction of "better" for every headline metric.
HIGHER_IS_BETTER = {"acc": True, "bwt": True, "fwt": True, "forgetting": False, "seconds_per_window": False}
COLUMNS = ["acc", "bwt", "fwt", "forgetting", "seconds_per_window", "fast_state_bytes"]
HEADERS = {"seconds_per_window": "s/window", "fast_state_bytes": "fast state"}


def rank_methods(records: Mapping[str, Mapping[str, float]], metric: str) -> list[str]:
    """Method names from best to worst by `metric` (ties broken by name for determinism)."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"cannot rank by '{metric}'; choose one of {sorted(HIGHER_IS_BETTER)}")
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
    return sorted(records, key=lambda name: (sign * records[name][metric], name))


def format_value(column: str, value: float) -> str:
    if column == "fast_state_bytes":
        return f"{value / 1024:.1f} KiB"
    if column == "seconds_per_window":
        return f"{value:.2f}"
    return f"{value:+.3f}" if column in ("bwt", "fwt") else f"{value:.3f}"


def markdown_table(records: Mapping[str, Mapping[str, float]], order: list[str]) -> str:
    header = "| method | " + " | ".join(HEADERS.get(c, c) for c in COLUMNS) + " |"
    rule = "|---|" + "---|" * len(COLUMNS)
    rows = [f"| {name} | " + " | ".join(format_value(c, records[name][c]) for c in COLUMNS) + " |" for name in order]
    return "\n".join([header, rule, *rows]) + "\n"
