"""The inner loops: seeded mini-batch training and batched evaluation.

Data lives on the device as whole tensors and batches are index slices, so an epoch costs
one permutation and no DataLoader machinery; small streams train at bare-PyTorch speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
StepHook = Callable[[nn.Module], None]
BatchHook = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], None]  # model, x, y, epoch


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def masked_cross_entropy(classes: list[int]) -> LossFn:
    """Cross-entropy over the given classes only (the "labels trick", Zeno et al. 2018).

    Logits of classes outside the window are left out of the softmax, so learning a window
    of new classes does not push the old classes' logits down: the main cause of
    forgetting in class-incremental learning without replay.
    """
    keep = torch.tensor(sorted(classes))

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        mask = torch.full((logits.shape[1],), float("-inf"), device=logits.device)
        mask[keep.to(logits.device)] = 0.0
        return F.cross_entropy(logits + mask, y)

    return loss


def minibatches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    """Index batches of one epoch in a seeded order (drawn on the CPU, so CPU and GPU agree)."""
    order = torch.randperm(n, generator=generator).to(device)
    yield from order.split(batch_size)


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    parameters: Iterable[nn.Parameter] | Iterable[dict] | None = None,
    loss_fn: LossFn = cross_entropy_loss,
    weight_decay: float = 0.0,
    on_step: StepHook | None = None,
    before_step: BatchHook | None = None,
) -> list[float]:
    """Adam over `parameters` (default: the model's trainable ones; or parameter groups with
    their own learning rates); returns the mean loss per epoch.

    `on_step(model)` runs after every optimizer step (continual evaluation hooks in here);
    `before_step(model, x, y, epoch)` sees each batch before the model trains on it
    (prequential, test-then-train evaluation).
    """
    source = list(parameters) if parameters is not None else list(model.parameters())
    if source and isinstance(source[0], dict):  # parameter groups, each with its own lr
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in source]
    else:
        groups = [{"params": [p for p in source if p.requires_grad]}]
    optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    model.train()
    epoch_losses = []
    for epoch in range(epochs):
        total, batches = torch.zeros((), device=x.device), 0
        for index in minibatches(len(x), batch_size, generator, x.device):
            if before_step is not None:
                before_step(model, x[index], y[index], epoch)
            loss = loss_fn(model, x[index], y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if on_step is not None:
                on_step(model)
            total += loss.detach()
            batches += 1
        epoch_losses.append(float(total) / max(batches, 1))
    model.eval()
    return epoch_losses


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(chunk) for chunk in x.split(batch_size)]) if len(x) else x.new_zeros((0,))
    model.train(was_training)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        raise ValueError("accuracy on an empty test set is undefined")
    # correct / rows in float64: exact, where a float32 mean shows as 0.8999999761581421
    return int((predict_logits(model, x).argmax(dim=1) == y).sum()) / len(y)
