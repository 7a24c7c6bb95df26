"""The slow model's own training: from scratch on window 0 (the pretrain split), or on
every window so far (the live loop's weekly `pretrain-slow`)."""

from __future__ import annotations

import torch

from pathlib import Path

from components.config import ModelParams, Params
from components.data.loading import Stream
from components.errors import ParamsError, StreamError
from components.layout import REPO_ROOT
from components.models import SlowNet, build_model
from components.runtime import configure_torch
from components.training import train


def pretrain_slow_model(params: Params, stream: Stream, root: Path = REPO_ROOT) -> tuple[SlowNet, list[float]]:
    """A fresh slow model trained on window 0, torch seeded with params' `seed`."""
    return train_slow_model(params, stream, [0], configure_torch(params.threads, params.seed), root)


def load_checkpoint(model: torch.nn.Module, params: ModelParams, root: Path) -> None:
    """`model.checkpoint` into `model`: a state dict under data/raw/ (a DVC input like any
    other), read with weights_only=True or as safetensors; one line when it does not fit."""
    from components.data.table_source import resolve

    assert params.checkpoint is not None
    try:
        path = resolve(Path(root), params.checkpoint, "model.checkpoint")
    except StreamError as error:
        raise ParamsError(str(error)) from None
    where = f"params.yaml: model.checkpoint: {params.checkpoint}"
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a missing, truncated or foreign file: one line
        raise ParamsError(f"{where}: not a readable state dict ({type(error).__name__}: {str(error).splitlines()[0]})") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        first = str(error).splitlines()[1 if "\n" in str(error) else 0].strip()
        raise ParamsError(f"{where}: does not fit the model ({first})") from None


def train_slow_model(
    params: Params, stream: Stream, windows: list[int], generator: torch.Generator, root: Path = REPO_ROOT
) -> tuple[SlowNet, list[float]]:
    """A fresh slow model (or `model.checkpoint`'s) trained jointly on the training rows of
    `windows` for `pretrain.epochs` epochs (0: kept as loaded)."""
    parts = [stream.window(k) for k in windows]
    x = torch.cat([w.x_train for w in parts]) if len(parts) > 1 else parts[0].x_train
    y = torch.cat([w.y_train for w in parts]) if len(parts) > 1 else parts[0].y_train
    model = build_model(params.model, stream.manifest.num_features, stream.num_classes, root)
    if params.model.checkpoint:
        load_checkpoint(model, params.model, root)
    model = model.to(stream.device)
    p = params.pretrain
    losses = train(
        model, x, y, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, generator=generator, weight_decay=p.weight_decay
    )
    return model, losses
