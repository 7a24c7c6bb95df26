"""The same work as the `pretrain` and `stream --method finetune` flows, as a plain PyTorch
script a user would write by hand: no Prefect, no MLflow, no pydantic, no checkpoints
between windows. The baseline the orchestration overhead is measured against.

    python -m benchmarks.bare_loop pretrain --stream DIR --out DIR [--epochs 30 ...]
    python -m benchmarks.bare_loop stream   --stream DIR --out DIR [--epochs 5 ...]

Same model class, data, epochs, batch size, Adam, seeds (batch order from a CPU generator
seeded like the flows seed theirs), thread count and deterministic-kernel setting (which
also imports torch._dynamo, ~1 s, before training: otherwise the first optimizer would
import it inside the timed loop), so it also reproduces the flows'
accuracies: a check that the work is identical. Prints one JSON line: training seconds,
samples seen and the accuracies.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl
import torch
import torch.nn.functional as F

from components.models import SlowNet


def load(stream: Path, split: str, window: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    frame = pl.read_parquet(stream / f"split={split}" / f"window={window:04d}" / "part-0.parquet")
    x = torch.from_numpy(frame["x"].to_numpy().astype("float32")).to(device)
    return x, torch.from_numpy(frame["y"].to_numpy()).to(device)


def fit(model, x, y, epochs: int, lr: float, batch_size: int, generator: torch.Generator) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).to(x.device).split(batch_size):
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()


def finish(device: torch.device) -> None:
    """Wait for queued GPU work before a timer stops (the flows' loop waits at every epoch's
    end, when it reads the epoch loss)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def accuracies(model, tests) -> list[float]:
    return [float((model(x).argmax(1) == y).float().mean()) for x, y in tests]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["pretrain", "stream"])
    parser.add_argument("--stream", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # as the flows run (components/runtime.py)
    torch.manual_seed(args.seed)
    manifest = json.loads((args.stream / "stream.json").read_text())
    windows = manifest["num_windows"]
    tests = [load(args.stream, "test", k, device) for k in range(windows)]
    model = SlowNet(manifest["schema"]["x"]["size"], len(manifest["class_names"]), args.channels, args.hidden).to(device)
    seconds, samples, result = 0.0, 0, {}
    if args.phase == "pretrain":
        x, y = load(args.stream, "train", 0, device)
        start = time.perf_counter()
        fit(model, x, y, args.epochs, args.lr, args.batch_size, torch.Generator().manual_seed(args.seed))
        finish(device)
        seconds, samples = time.perf_counter() - start, args.epochs * len(x)
        result["accuracies"] = accuracies(model, tests)
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.out / "model.pt")
    else:
        model.load_state_dict(torch.load(args.out / "model.pt", weights_only=True))
        rows = []
        for k in range(1, windows):
            x, y = load(args.stream, "train", k, device)
            start = time.perf_counter()
            fit(model, x, y, args.epochs, args.lr, args.batch_size, torch.Generator().manual_seed(args.seed * 1000 + k))
            finish(device)
            seconds += time.perf_counter() - start
            samples += args.epochs * len(x)
            rows.append(accuracies(model, tests))
        result["matrix"] = rows
        torch.save(model.state_dict(), args.out / "final.pt")
    print(json.dumps({"train_seconds": seconds, "samples": samples, "device": str(device), **result}))


if __name__ == "__main__":
    main()
