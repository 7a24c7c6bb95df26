"""Figures for the MLflow UI and README (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def accuracy_heatmap(matrix: np.ndarray, title: str, path: Path) -> Path:
    """R[i, j] as a heatmap: rows = after training through window i, columns = test window j."""
    r = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * r.shape[1], 1.0 + 0.8 * r.shape[0]))
    image = ax.imshow(r, vmin=0.0, vmax=1.0, cmap="viridis")
    for (i, j), value in np.ndenumerate(r):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black", fontsize=9)
    ax.set_xticks(range(r.shape[1]), [f"w{j}" for j in range(r.shape[1])])
    ax.set_yticks(range(r.shape[0]), ["slow" if i == 0 else f"after w{i}" for i in range(r.shape[0])])
    ax.set_xlabel("evaluated on window")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def matrix_csv(matrix: np.ndarray) -> str:
    r = np.asarray(matrix)
    header = "after," + ",".join(f"w{j}" for j in range(r.shape[1]))
    rows = [("slow" if i == 0 else f"w{i}") + "," + ",".join(f"{v:.6f}" for v in row) for i, row in enumerate(r)]
    return "\n".join([header, *rows]) + "\n"
