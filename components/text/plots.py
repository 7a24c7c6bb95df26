"""Figures of a text comparison: bpb by position in the document (static vs each fast
learner: the gain grows as a document is read) and the R matrix in bpb (lower is better:
the colour scale is reversed so that better is still lighter)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def bpb_by_position(curves: dict[str, list[float]], segment: int, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1) * segment, curve, label=name, linestyle="--" if name == "static" else "-")
    ax.set_xlabel("bytes read of the document")
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title("held-out bpb by position, windows 1..T")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def bpb_heatmap(matrix: np.ndarray, windows: list[str], title: str, path: Path) -> None:
    r = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 * r.shape[1] + 2, 1.0 * r.shape[0] + 1.5))
    image = ax.imshow(r, cmap="viridis_r")
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            ax.text(j, i, f"{r[i, j]:.2f}", ha="center", va="center", color="white" if r[i, j] > r.mean() else "black")
    ax.set_xticks(range(r.shape[1]), windows, rotation=30, ha="right")
    ax.set_yticks(range(r.shape[0]), ["pretrained", *(f"after {w}" for w in windows[1:r.shape[0]])])
    ax.set_title(f"{title}: bpb (lower is better)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
