"""Figures for the MLflow UI and README (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    """matplotlib's pyplot, headless. Imported on first use rather than with this module: a
    stage's own process reads this module's CSV helpers and draws nothing (0.3 s of its start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Past this many windows a heatmap is drawn at a fixed size without cell labels, so its
# pixels stay bounded whatever the stream's length (209 windows once made a 318-megapixel PNG).
ANNOTATED_WINDOWS = 16
MAX_FIGURE_INCHES = (12.0, 10.0)


def accuracy_heatmap(matrix: np.ndarray | list[list[float]], title: str, path: Path) -> Path:
    """R[i, j] as a heatmap: rows = after training through window i, columns = test window j.
    At most about 1200 x 1000 pixels: long streams lose the per-cell labels (and get a colour
    bar instead), not the picture."""
    r = np.asarray(matrix)
    small = max(r.shape) <= ANNOTATED_WINDOWS
    # wide enough for the title too (about 0.085 inch a character at its size), as on a
    # 3-window stream with a long method name
    size = (max(1.2 + 0.9 * r.shape[1], 0.5 + 0.085 * len(title)), 1.0 + 0.8 * r.shape[0]) if small else MAX_FIGURE_INCHES
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=size)
    image = ax.imshow(r, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto" if not small else None)
    if small:
        for (i, j), value in np.ndenumerate(r):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black", fontsize=9)
        ax.set_xticks(range(r.shape[1]), [f"w{j}" for j in range(r.shape[1])])
        ax.set_yticks(range(r.shape[0]), ["slow" if i == 0 else f"after w{i}" for i in range(r.shape[0])])
    else:
        step = max(1, r.shape[1] // 12)
        ax.set_xticks(range(0, r.shape[1], step), [f"w{j}" for j in range(0, r.shape[1], step)], rotation=90)
        ax.set_yticks(range(0, r.shape[0], step), ["slow" if i == 0 else f"after w{i}" for i in range(0, r.shape[0], step)])
    ax.set_xlabel("evaluated on window")
    ax.set_title(title)
    # A short stream's cells carry their values: a colour bar would repeat them (and cost a
    # third of the figure's time, drawn by every unit).
    if not small:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def progress_line(window: int, last: int, seconds: float, accuracies: list[float], bar: int = 16) -> str:
    """One fixed-width line per finished window, however long the stream: a bar, the time,
    accuracy over the windows seen so far and the worst of them (not one number per window)."""
    seen = accuracies[: window + 1]
    worst = min(range(len(seen)), key=seen.__getitem__)
    filled = round(bar * window / max(last, 1))
    digits = len(str(last))
    return (f"window {window:>{digits}}/{last} [{'#' * filled}{'.' * (bar - filled)}] {seconds:6.2f}s  "
            f"acc(seen) {sum(seen) / len(seen):.3f}  worst w{worst} {seen[worst]:.3f}")


def matrix_csv(matrix: np.ndarray) -> str:
    r = np.asarray(matrix)
    header = "after," + ",".join(f"w{j}" for j in range(r.shape[1]))
    rows = [("slow" if i == 0 else f"w{i}") + "," + ",".join(f"{v:.6f}" for v in row) for i, row in enumerate(r)]
    return "\n".join([header, *rows]) + "\n"


def continual_csv(points: list) -> str:
    """One row per evaluation point: step, window being learned, mean old-window accuracy,
    and the accuracy on every window seen so far (empty where not yet seen)."""
    width = max(p.window for p in points) + 1
    header = "step,window,acc_old," + ",".join(f"acc_w{j}" for j in range(width))
    rows = []
    for p in points:
        old = "" if p.old_accuracy is None else f"{p.old_accuracy:.6f}"
        cells = [f"{a:.6f}" for a in p.accuracies] + [""] * (width - len(p.accuracies))
        rows.append(f"{p.step},{p.window},{old}," + ",".join(cells))
    return "\n".join([header, *rows]) + "\n"


def read_continual_csv(path: Path) -> list:
    """The evaluation points written by `continual_csv`, read back."""
    from components.evaluation import EvalPoint

    points = []
    for line in Path(path).read_text().splitlines()[1:]:
        step, window, _, *accs = line.split(",")
        points.append(EvalPoint(int(step), int(window), tuple(float(a) for a in accs if a)))
    return points


def continual_curves(curves: dict[str, list], path: Path) -> Path:
    """Accuracy on each window over optimizer steps, one panel per method: the stability
    gap shows as the dip in old windows' accuracy at the start of each new window.

    A method that takes no optimizer step (error_memory) has every point at step 0: its
    panel is drawn over the windows instead (accuracy after each), and says so."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(curves), 1, figsize=(9, 2.6 * len(curves)), squeeze=False)
    for ax, (name, points) in zip(axes[:, 0], curves.items()):
        stepless = len({p.step for p in points}) <= 1
        xs = [p.window for p in points] if stepless else [p.step for p in points]
        width = max(p.window for p in points) + 1
        for j in range(width):
            seen = [(x, p) for x, p in zip(xs, points) if p.window >= j]
            ax.plot([x for x, _ in seen], [p.accuracies[j] for _, p in seen], label=f"w{j}", linewidth=1.2,
                    marker="o" if stepless else None, markersize=3)
        for window in sorted({p.window for p in points}):
            start = next(x for x, p in zip(xs, points) if p.window == window)
            ax.axvline(start, color="grey", linewidth=0.6, linestyle=":")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name} (no optimizer steps: accuracy after each window)" if stepless else name)
        if stepless:
            ax.set_xticks(sorted(set(xs)), [f"after w{w}" for w in sorted(set(xs))])
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, ncol=1 + width // 12)
    axes[-1, 0].set_xlabel("optimizer step")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path


def headline_bars(summaries: dict[str, dict], metrics: list[str], path: Path) -> Path:
    """Horizontal bars of headline metrics across methods (names on the y axis never
    overlap however many methods), error bars = std over seeds, best of the first metric on top."""
    names = list(summaries)[::-1]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.2 + 2.6 * len(metrics), 1.0 + 0.3 * len(names)),
                             squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        means = [summaries[n]["mean"][metric] for n in names]
        stds = [summaries[n]["std"][metric] for n in names]
        ax.barh(names, means, xerr=stds, capsize=2, color="tab:blue")
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_title(metric)
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path
