"""ilora (I-LoRA, Ren et al. 2024), implemented from the paper.

Two LoRA adapters sit on the slow model. The fast adapter learns from the window and from
replayed rows (a reservoir buffer that starts with the pretrain split). After every
optimizer step the slow adapter moves towards the fast one as an exponential moving
average, slow = ema * slow + (1 - ema) * fast. A consistency loss pulls the fast model's
hidden features on replayed rows towards the slow model's. The slow adapter is what
serves, and at the end of the window it is merged into the slow model's weights; the
next window starts with fresh adapters.

The public reference code never updates its slow adapter; this one does after every step,
and tests/test_method_mechanisms.py checks it against the EMA of the fast adapter's history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from pydantic import Field

from components.data.loading import Window
from components.methods.base import Method, MethodConfig, log_range, linear_range
from components.models import adaptable_layers, state_bytes

if TYPE_CHECKING:  # peft pulls in transformers (~3 s): imported only where an adapter is built
    from peft import PeftModel


class IloraConfig(MethodConfig):
    lr: float = Field(5e-3, gt=0)
    rank: int = Field(4, ge=1)
    alpha: float = Field(8.0, gt=0)
    ema: float = Field(0.95, gt=0, lt=1, description="interpolation weight: slow = ema*slow + (1-ema)*fast")
    consistency: float = Field(0.1, ge=0, description="weight of the hidden-state consistency loss")
    buffer_size: int = Field(500, ge=1)


class Ilora(Method):
    name = "ilora"
    search_space = {"lr": log_range(1e-4, 5e-2), "ema": linear_range(0.8, 0.999), "consistency": log_range(0.01, 1.0)}
    requires = ("features", "head")
    Config = IloraConfig
    state_attributes = ("buffer",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = self.replay_buffer(self.config.buffer_size)

    def attach_adapters(self) -> PeftModel:
        from peft import LoraConfig, get_peft_model

        c = self.config
        lora = LoraConfig(r=c.rank, lora_alpha=c.alpha, target_modules=adaptable_layers(self.slow), bias="none")
        model = get_peft_model(self.slow, lora, adapter_name="fast")
        model.add_adapter("slow", lora)
        model.set_adapter("fast")
        self.pairs = [
            (param, dict(model.named_parameters())[name.replace(".fast.", ".slow.")])
            for name, param in model.named_parameters() if ".fast." in name
        ]
        with torch.no_grad():  # both adapters start from the same point
            for fast, slow in self.pairs:
                slow.copy_(fast)
        return model

    @torch.no_grad()
    def ema_step(self) -> None:
        e = self.config.ema
        for fast, slow in self.pairs:
            slow.mul_(e).add_(fast, alpha=1 - e)

    def slow_features(self, model: PeftModel, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            model.set_adapter("slow")
            features = model.base_model.model.features(x)
            model.set_adapter("fast")  # also makes the fast adapter the trainable one again
        return features

    def adapt(self, window: Window) -> tuple[PeftModel, list[float]]:
        c = self.config
        model = self.attach_adapters()
        base_loss = self.window_loss(window)
        inner = model.base_model.model

        def loss(m, x, y):
            rx, ry = self.buffer.sample(c.batch_size, self.context.generator)
            replay_features = inner.features(rx)
            return (
                base_loss(m, x, y)
                + F.cross_entropy(inner.head(replay_features), ry)
                + c.consistency * F.mse_loss(replay_features, self.slow_features(model, rx))
            )

        losses = self.fit(model, window.x_train, window.y_train, loss_fn=loss, after_step=self.ema_step)
        return model, losses

    def absorb(self, window: Window) -> dict[str, list[float]]:
        model, losses = self.adapt(window)
        self.count_samples(self.config.epochs * len(window.y_train))  # one replayed batch per window batch
        self._adapter_bytes = 2 * state_bytes([fast for fast, _ in self.pairs])
        model.set_adapter("slow")
        self.slow = model.merge_and_unload(adapter_names=["slow"])  # consolidation: the slow adapter
        self.buffer.add(window.x_train, window.y_train, self.context.generator)
        return {"train": losses}

    def fast_state_bytes(self) -> int:
        return getattr(self, "_adapter_bytes", 0) + self.buffer.nbytes()  # both adapters and the buffer
