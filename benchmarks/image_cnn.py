"""Samples per second of the image CNN (`model.kind: cnn2d`) trained by the project's loop
(components/training.train, as pretraining and every method use it) against a bare PyTorch
loop a user would write, on the same real Fashion-MNIST rows, model, seed and thread count,
measured alternately in one process so that machine load hits both alike.

    python -m benchmarks.image_cnn [--rows 2000] [--epochs 3] [--rounds 3] [--threads 1]

Needs data/external/fashion-mnist (`python -m flows.fetch` with stream.source: fashion-mnist,
or the Debian package dataset-fashion-mnist). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from components.data.fetch import FASHION_MNIST_DIR, FASHION_MNIST_INSTALLED
from components.data.idx_source import read_idx
from components.layout import REPO_ROOT
from components.models import SlowCNN2d
from components.training import train


def images(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    folder = REPO_ROOT / "data" / "external" / FASHION_MNIST_DIR
    folder = folder if folder.is_dir() else FASHION_MNIST_INSTALLED
    x = read_idx(folder / "train-images-idx3-ubyte.gz")[:rows].reshape(rows, -1).astype(np.float32) / 255.0
    y = read_idx(folder / "train-labels-idx1-ubyte.gz")[:rows].astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def bare(model: torch.nn.Module, x, y, epochs: int, batch_size: int, generator: torch.Generator) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = images(args.rows)
    seconds = {"project": [], "bare": []}
    weights = {}
    for round_ in range(args.rounds):
        for name in ("project", "bare")[:: 1 if round_ % 2 == 0 else -1]:  # alternate who goes first
            torch.manual_seed(0)
            model = SlowCNN2d((1, 28, 28), 10, channels=args.channels)
            generator = torch.Generator().manual_seed(0)
            start = time.perf_counter()
            if name == "project":
                train(model, x, y, epochs=args.epochs, lr=1e-3, batch_size=64, generator=generator)
            else:
                bare(model, x, y, args.epochs, 64, generator)
            seconds[name].append(time.perf_counter() - start)
            weights[name] = [p.detach().clone() for p in model.parameters()]
    samples = args.rows * args.epochs
    best = {k: min(v) for k, v in seconds.items()}
    print(json.dumps({
        "rows": args.rows, "epochs": args.epochs, "threads": args.threads, "channels": args.channels,
        "samples_per_second": {k: round(samples / v, 1) for k, v in best.items()},
        "ratio_project_over_bare_time": round(best["project"] / best["bare"], 3),
        "same_weights": all(torch.equal(a, b) for a, b in zip(weights["project"], weights["bare"])),
    }))


if __name__ == "__main__":
    main()
