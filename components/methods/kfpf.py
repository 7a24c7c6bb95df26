"""kfpf (k-FPF, Zhao et al. ICML 2023, "Does continual learning equally forget all
parameters?"): plain finetuning on the window with no replay, then consolidation by
finetuning only the forgetting-prone modules on a small buffer.

The paper finds that forgetting concentrates in a few task-specific modules, the classifier
and the last layers of the backbone; finetuning only those on buffered rows, triggered
periodically rather than replaying at every step, matches every-step replay for a fraction
of its cost. Here the period is the window: after each one, `fpf_steps` optimizer steps on
buffer batches move the head and the backbone's last linear layer, everything else frozen.
The buffer is a reservoir that starts with the pretrain split.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import nn

from components.data.loading import Window
from components.errors import ParamsError
from components.methods.base import Method, MethodConfig, Knob, log_range


class KfpfConfig(MethodConfig):
    buffer_size: int = Field(500, ge=1, description="rows the reservoir buffer holds")
    fpf_steps: int = Field(100, ge=0, description="k: optimizer steps on buffer batches after each window",
                           json_schema_extra={"tiny": 5})
    fpf_lr: float = Field(1e-2, gt=0, description="learning rate of those steps (the modules are small: a larger step than the window's)")


class Kfpf(Method):
    name = "kfpf"
    search_space = {"lr": log_range(1e-4, 5e-2), "fpf_lr": log_range(1e-3, 1e-1), "fpf_steps": Knob(low=10, high=200, integer=True, log=True)}
    requires = ("backbone", "head")
    Config = KfpfConfig
    state_attributes = ("buffer",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not any(isinstance(m, nn.Linear) for m in self.slow.backbone.modules()):
            raise ParamsError("params.yaml: methods: method 'kfpf' needs an nn.Linear layer inside the slow model's "
                              "backbone (the layer it finetunes with the head); this model's backbone has none")
        self.buffer = self.replay_buffer(self.config.buffer_size)

    def forgetting_prone(self) -> list[nn.Parameter]:
        """The head and the backbone's last linear layer."""
        last = [m for m in self.slow.backbone.modules() if isinstance(m, nn.Linear)][-1]
        return [*last.parameters(), *self.slow.head.parameters()]

    def absorb(self, window: Window) -> dict[str, list[float]]:
        losses = {"train": self.fit(self.slow, window.x_train, window.y_train, loss_fn=self.window_loss(window))}
        self.buffer.add(window.x_train, window.y_train, self.context.generator)
        if self.config.fpf_steps:
            losses["fpf"] = self.finetune_forgetting_prone()
        return losses

    def finetune_forgetting_prone(self) -> list[float]:
        """Consolidation: `fpf_steps` Adam steps on buffer batches, every other module frozen."""
        c = self.config
        x, y = self.buffer.sample(c.fpf_steps * c.batch_size, self.context.generator)
        prone = {id(p) for p in self.forgetting_prone()}
        frozen = [p for p in self.slow.parameters() if id(p) not in prone and p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            return self.fit(self.slow, x, y, epochs=1, lr=c.fpf_lr)
        finally:
            for p in frozen:
                p.requires_grad_(True)
