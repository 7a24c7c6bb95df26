"""slca (Slow Learner with Classifier Alignment, Zhang et al. 2023).

Slow learner: the backbone trains at a small fraction (`backbone_lr_ratio`, default 1/100)
of the head's learning rate. After each window the per-class mean and covariance of the
backbone's features are stored for the window's classes (the pretrain split's classes
first). Classifier alignment: the head alone is then retrained on features sampled from
the Gaussians of every class seen so far, with logit normalisation (logits divided by
their norm and a temperature) so that no class's logits dominate by scale.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from components.data.loading import Window
from components.methods.base import Method, MethodConfig, log_range
from components.training import train


class SlcaConfig(MethodConfig):
    lr: float = Field(1e-3, gt=0, description="the head's learning rate")
    backbone_lr_ratio: float = Field(0.01, gt=0, le=1, description="backbone lr = ratio * head lr")
    align_epochs: int = Field(5, ge=0, description="epochs of classifier alignment (0 = none)")
    align_samples: int = Field(256, ge=1, description="sampled features per class per alignment epoch")
    align_lr: float = Field(1e-3, gt=0)
    logit_temperature: float = Field(0.1, gt=0, description="tau in logits / (||logits|| * tau)")


def normalised_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits / (logits.norm(dim=1, keepdim=True) + 1e-7) / temperature


class Slca(Method):
    name = "slca"
    search_space = {"lr": log_range(1e-4, 5e-2), "backbone_lr_ratio": log_range(0.001, 1.0), "logit_temperature": log_range(0.02, 1.0)}
    requires = ("features", "head", "backbone")
    Config = SlcaConfig
    state_attributes = ("class_means", "class_covs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.class_means: dict[int, torch.Tensor] = {}
        self.class_covs: dict[int, torch.Tensor] = {}

    def parameter_groups(self) -> list[dict]:
        c = self.config
        return [
            {"params": list(self.slow.backbone.parameters()), "lr": c.lr * c.backbone_lr_ratio},
            {"params": list(self.slow.head.parameters()), "lr": c.lr},
        ]

    @torch.no_grad()
    def record_statistics(self, window: Window) -> None:
        self.slow.eval()
        features = self.slow.features(window.x_train)
        for label in window.classes:
            f = features[window.y_train == label]
            if len(f) < 2:
                continue
            self.class_means[label] = f.mean(0)
            self.class_covs[label] = torch.cov(f.T) + 1e-4 * torch.eye(f.shape[1], device=f.device)

    def sample_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        n = self.config.align_samples
        for label in sorted(self.class_means):
            dist = torch.distributions.MultivariateNormal(self.class_means[label], covariance_matrix=self.class_covs[label])
            noise = torch.randn(n, len(self.class_means[label]), generator=self.context.generator).to(dist.loc.device)
            xs.append(dist.loc + noise @ dist.scale_tril.T)
            ys.append(torch.full((n,), label, dtype=torch.long, device=dist.loc.device))
        return torch.cat(xs), torch.cat(ys)

    def align_classifier(self) -> list[float]:
        c = self.config
        losses = []
        for _ in range(c.align_epochs):
            x, y = self.sample_features()
            losses += train(
                self.slow.head, x, y, epochs=1, lr=c.align_lr, batch_size=c.batch_size,
                generator=self.context.generator,
                loss_fn=lambda head, f, t: F.cross_entropy(normalised_logits(head(f), c.logit_temperature), t),
            )
        return losses

    def absorb(self, window: Window) -> dict[str, list[float]]:
        if not self.class_means:
            self.record_statistics(self.context.stream.window(0))
        losses = self.fit(
            self.slow, window.x_train, window.y_train, loss_fn=self.window_loss(window),
            parameters=self.parameter_groups(),
        )
        self.record_statistics(window)
        align = self.align_classifier()
        return {"train": losses, "align": align}
