"""lora: a peft LoRA adapter absorbs the window while the slow weights stay frozen; at the
end of the window the adapter is merged into the slow model (consolidation by merge).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from components.data.loading import Window
from components.errors import ParamsError
from components.methods.base import Method, MethodConfig, Knob, log_range
from components.models import adaptable_layers, state_bytes

if TYPE_CHECKING:  # peft pulls in transformers (~3 s): imported only where an adapter is built
    from peft import PeftModel


class LoraMethodConfig(MethodConfig):
    rank: int = Field(4, ge=1)
    alpha: float = Field(8.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: Literal["all"] | list[str] = Field(
        "all", description="layer names to adapt; 'all' = every Conv1d and Linear layer"
    )


class Lora(Method):
    name = "lora"
    search_space = {"lr": log_range(1e-4, 1e-1), "rank": Knob(choices=[2, 4, 8, 16]), "alpha": log_range(1.0, 32.0)}
    Config = LoraMethodConfig

    def attach_adapter(self) -> PeftModel:
        """Wrap the slow model with a fresh adapter; base weights are frozen by peft."""
        from peft import LoraConfig, get_peft_model

        c = self.config
        layers = adaptable_layers(self.slow)
        targets = layers if c.target_modules == "all" else list(c.target_modules)
        missing = [t for t in targets if t not in layers]
        if missing:  # peft would say so in a traceback, after the run started
            raise ParamsError(f"target_modules: {missing} are not adaptable layers of the slow model; "
                              f"its layers: {layers} (or 'all')")
        lora = LoraConfig(r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout, target_modules=targets, bias="none")
        return get_peft_model(self.slow, lora)

    def adapt(self, window: Window) -> tuple[PeftModel, list[float]]:
        """Fast step: train only the adapter on the window."""
        adapted = self.attach_adapter()
        return adapted, self.fit(adapted, window.x_train, window.y_train, loss_fn=self.window_loss(window))

    def merge(self, adapted: PeftModel) -> None:
        """Consolidation: fold the adapter into the slow weights and drop the peft wrapper."""
        self.slow = adapted.merge_and_unload()

    def absorb(self, window: Window) -> dict[str, list[float]]:
        adapted, losses = self.adapt(window)
        self._adapter_bytes = state_bytes({k: v for k, v in adapted.state_dict().items() if "lora_" in k})
        self.merge(adapted)
        return {"train": losses}

    def fast_state_bytes(self) -> int:
        return getattr(self, "_adapter_bytes", 0)  # the window's adapter, before it was merged
