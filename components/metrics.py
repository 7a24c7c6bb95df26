"""Continual-learning metrics from an accuracy matrix.

R[i, j] is the accuracy on window j's test rows after training through window i, for
i, j = 0..T. Row 0 is the slow model before any fast step (b[j] = R[0, j]); window 0 is the
slow model's own pretrain split, so forgetting what it knew counts. Each definition is the
1/(T-1)-style average over the windows it names (shared/DESIGN.md, "Metrics"):

- ACC        = mean_j R[T, j]                                  (j = 0..T)
- BWT        = mean_{j<T} (R[T, j] - R[j, j])
- FWT        = mean_{j>=1} (R[j-1, j] - b[j])
- forgetting = mean_{j<T} (max_{l<T} R[l, j] - R[T, j])

BWT compares with the accuracy right after learning window j, forgetting with the best
accuracy ever reached on it: they differ whenever a later window raised accuracy on j.
"""

from __future__ import annotations

import numpy as np

# The metrics that can rank methods (compare.champion_metric), and which way is better: the one
# list, which params validation and the comparison both read.
HIGHER_IS_BETTER = {
    "acc": True, "bwt": True, "fwt": True, "forgetting": False, "min_acc": True, "wc_acc": True,
}


def _check(matrix: np.ndarray) -> np.ndarray:
    r = np.asarray(matrix, dtype=float)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] < 2:
        raise ValueError(f"accuracy matrix must be square with at least 2 rows, got shape {r.shape}")
    return r


def average_accuracy(matrix: np.ndarray) -> float:
    r = _check(matrix)
    return float(r[-1].mean())


def backward_transfer(matrix: np.ndarray) -> float:
    r = _check(matrix)
    last = r.shape[0] - 1
    return float(np.mean([r[last, j] - r[j, j] for j in range(last)]))


def forward_transfer(matrix: np.ndarray) -> float:
    r = _check(matrix)
    return float(np.mean([r[j - 1, j] - r[0, j] for j in range(1, r.shape[0])]))


def forgetting(matrix: np.ndarray) -> float:
    r = _check(matrix)
    last = r.shape[0] - 1
    return float(np.mean([r[:last, j].max() - r[last, j] for j in range(last)]))


def summarize(matrix: np.ndarray) -> dict[str, float]:
    return {
        "acc": average_accuracy(matrix),
        "bwt": backward_transfer(matrix),
        "fwt": forward_transfer(matrix),
        "forgetting": forgetting(matrix),
    }


def min_accuracy(points: list) -> float | None:
    """min-ACC: for each window j learned before the last one, the lowest accuracy on j seen
    at any evaluation point after j was learned; averaged over those windows."""
    last = max(p.window for p in points)
    minima = []
    for j in range(last):
        after = [p.accuracies[j] for p in points if p.window > j]
        if after:
            minima.append(min(after))
    return float(sum(minima) / len(minima)) if minima else None


def worst_case_accuracy(points: list) -> float | None:
    """WC-ACC = (1/k) acc_current + (1 - 1/k) min-ACC, with k the number of windows seen and
    acc_current the last point's accuracy on the window being learned."""
    low = min_accuracy(points)
    if low is None:
        return None
    final = points[-1]
    k = final.window + 1
    return float(final.accuracies[final.window] / k + (1 - 1 / k) * low)


def stability_gap(points: list, window: int, tolerance: float = 0.01) -> dict[str, float | None]:
    """Depth and recovery of the dip in old-window accuracy while `window` is learned.

    Uses the mean accuracy over windows 0..window-1 at each point of that window. depth =
    accuracy at the window's start minus the lowest value during it; recovery_steps = steps
    from the lowest point until the accuracy is back within `tolerance` of the start value
    (None if it never comes back within the window).
    """
    trace = [p for p in points if p.window == window and p.old_accuracy is not None]
    if not trace:
        return {"depth": None, "recovery_steps": None}
    start = trace[0].old_accuracy
    low_index = min(range(len(trace)), key=lambda i: trace[i].old_accuracy)
    depth = start - trace[low_index].old_accuracy
    recovered = next((p.step for p in trace[low_index:] if p.old_accuracy >= start - tolerance), None)
    return {
        "depth": float(max(depth, 0.0)),
        "recovery_steps": None if recovered is None else float(recovered - trace[low_index].step),
    }
