"""Losses and penalties that more than one method uses: one definition each, so methods
never import from one another's files (tests/test_house.py checks it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's KD: KL(teacher || student) on temperature-softened outputs, scaled by T^2."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean", log_target=True,
    ) * (t * t)


def quadratic_penalty(model: nn.Module, anchor: dict[str, torch.Tensor], importance: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum_i importance_i * (theta_i - anchor_i)^2 over the model's named parameters."""
    total = next(model.parameters()).new_zeros(())
    for name, param in model.named_parameters():
        total = total + (importance[name] * (param - anchor[name]) ** 2).sum()
    return total
