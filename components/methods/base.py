"""What every slow-fast method is: a fast step per window, then (maybe) consolidation.

A method owns the slow model and whatever fast state it keeps (an adapter, a copy, a
buffer). The stream driver calls `learn_window` once per window and evaluates `predictor()`
after it. `learn_window` is the template: it does the bookkeeping every method shares
(windows learned, rows seen, the report) around the method's own `absorb`.

A method is one class: `name` (which also registers it), `Config` (its knobs, with
defaults: the one source of them), `absorb` (fast step + consolidation), and
`state_attributes`, the attributes beyond the slow model that make up its state. State
goes through `state_dict` / `load_state_dict` as tensors and plain values only, so it loads
with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, ClassVar

from components.errors import ParamsError

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from components.buffers import ReservoirBuffer
from components.data.loading import Stream, Window
from components.models import SlowNet, state_bytes
from components.training import BatchHook, LossFn, StepHook, cross_entropy_loss, masked_cross_entropy, train


class MethodConfig(BaseModel):
    """Knobs shared by every method; a method's own config class adds to these."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # `epochs: true` is an error, not 1

    method: str | None = Field(None, description="method type; defaults to the entry's name in params.yaml")
    epochs: int = Field(5, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    masked_loss: bool = Field(
        False, description="cross-entropy over the window's classes only (labels trick, Zeno et al. 2018)"
    )


class Knob(BaseModel):
    """One hyperparameter's search range for the tune stage: `low`..`high` (on a log scale
    when `log`; whole numbers when `integer`), or a list of `choices`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> "Knob":
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either a non-empty `choices` list or `low` and `high`, not both")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"give `low` < `high` (got low={self.low}, high={self.high}) or `choices`")
        elif self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0 (got {self.low})")
        return self


def log_range(low: float, high: float) -> Knob:
    return Knob(low=low, high=high, log=True)


def linear_range(low: float, high: float) -> Knob:
    return Knob(low=low, high=high)


@dataclass
class MethodContext:
    """What a method may use besides the slow model: the stream, device and seeded RNG."""

    stream: Stream
    device: torch.device
    generator: torch.Generator
    on_step: StepHook | None = None
    before_step: BatchHook | None = None


@dataclass
class WindowReport:
    """Training facts for one window; `losses` are per epoch, keyed by phase."""

    losses: dict[str, list[float]] = field(default_factory=dict)
    samples_seen: int = 0
    fast_state_bytes: int = 0


REGISTRY: dict[str, type["Method"]] = {}


class Method(ABC):
    name: ClassVar[str]  # set in a subclass's body: registers it under that name
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # Attributes that are state beyond the slow model: saved and restored by state_dict /
    # load_state_dict (an object with its own state_dict, a dict of tensors, or a plain value)
    # and counted as the fast state's bytes unless `fast_state_bytes` says otherwise.
    state_attributes: ClassVar[tuple[str, ...]] = ()
    # Non-empty for a reference point rather than a method to deploy (joint: the
    # retrain-on-everything upper bound; finetune: the lower bound). The comparison shows
    # it, marked, and never crowns it champion.
    reference: ClassVar[str] = ""
    # Parts of the slow model this method uses beyond logits from forward (components/models.py
    # MODEL_PARTS: "features", "head", "backbone"); checked when the model is built.
    requires: ClassVar[tuple[str, ...]] = ()
    # What the tune stage searches (knob -> range; params.yaml `tune.space` narrows or
    # overrides it): the knobs that set how fast and how hard the method learns. Memory
    # budgets (buffer sizes, capacities) are part of the protocol, the same for every
    # method, and are never tuned.
    search_space: ClassVar[dict[str, Knob]] = {"lr": Knob(low=1e-4, high=5e-2, log=True)}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:  # an abstract family (e.g. the anchored penalties) registers nothing
            return
        if name in REGISTRY and REGISTRY[name].__qualname__ != cls.__qualname__:
            raise ParamsError(f"method name {name!r} is registered twice ({REGISTRY[name].__module__}, {cls.__module__})")
        REGISTRY[name] = cls

    def __init__(self, slow: SlowNet, config: MethodConfig, context: MethodContext) -> None:
        self.slow = slow.to(context.device)
        self.config = config
        self.context = context
        self.windows_learned: list[int] = []
        self._samples_seen = 0

    @classmethod
    def used_config(cls, config: MethodConfig) -> dict[str, Any]:
        """The knobs this configuration actually uses (what its tracking run records)."""
        return config.model_dump(exclude_none=True)

    def learn_window(self, window: Window) -> WindowReport:
        """One window: the method's fast step and consolidation (`absorb`), then the shared
        bookkeeping. Rows passed through `fit` are counted; `count_samples` adds others."""
        self._samples_seen = 0
        losses = self.absorb(window)
        self.windows_learned.append(window.index)
        return WindowReport(losses, samples_seen=self._samples_seen, fast_state_bytes=self.fast_state_bytes())

    @abstractmethod
    def absorb(self, window: Window) -> dict[str, list[float]]:
        """Learn one window (fast step) and apply this method's consolidation rule; return
        the per-epoch losses by phase. `windows_learned` does not hold this window yet."""

    def count_samples(self, rows: int) -> None:
        """Rows this window trained on beyond those `fit` counts (e.g. replayed rows)."""
        self._samples_seen += rows

    def fast_state_bytes(self) -> int:
        """Bytes the method keeps besides the slow weights after a window (default: its
        `state_attributes`)."""
        return sum(_nbytes(getattr(self, name)) for name in self.state_attributes)

    def fit(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int | None = None,
        lr: float | None = None, loss_fn: LossFn | None = None, after_step: Callable[[], None] | None = None,
        parameters: list | None = None,
    ) -> list[float]:
        """`train` with this method's batch size, seeded batch order and step hooks.

        `after_step` runs after every optimizer step, before the continual evaluator looks.
        `parameters` may be a list of optimizer parameter groups (dicts with their own lr).
        """
        c = self.config
        evaluate = self.context.on_step
        self._samples_seen += (epochs or c.epochs) * len(y)

        def hook(trained: nn.Module) -> None:
            if after_step is not None:
                after_step()
            if evaluate is not None:
                evaluate(trained)

        return train(
            model, x, y, epochs=epochs or c.epochs, lr=lr or c.lr, batch_size=c.batch_size,
            generator=self.context.generator, loss_fn=loss_fn or cross_entropy_loss,
            on_step=hook if (after_step or evaluate) else None, parameters=parameters,
            before_step=self.context.before_step,
        )

    def window_loss(self, window: Window) -> LossFn:
        """The supervised loss on a window, masked to its classes when `masked_loss` is set."""
        return masked_cross_entropy(window.classes) if self.config.masked_loss else cross_entropy_loss

    def known_classes(self) -> list[int]:
        """Classes of the pretrain split and of every window learned so far."""
        stream = self.context.stream
        return sorted({c for i in (0, *self.windows_learned) for c in stream.window(i).classes})

    def replay_buffer(self, capacity: int, class_balanced: bool = False) -> ReservoirBuffer:
        """A reservoir buffer on the training device that starts with the pretrain split:
        the slow model's own knowledge is the first thing replay should protect."""
        stream, device = self.context.stream, self.context.device
        buffer = ReservoirBuffer(capacity, stream.manifest.num_features, device, class_balanced)
        base = stream.window(0)
        buffer.add(base.x_train, base.y_train, self.context.generator)
        return buffer

    def predictor(self) -> nn.Module:
        """The model that answers queries after the last window: by default, the slow model."""
        return self.slow

    def state_dict(self) -> dict[str, Any]:
        extra = {name: _dump(getattr(self, name)) for name in self.state_attributes}
        return {"slow": self.slow.state_dict(), "windows_learned": list(self.windows_learned), **extra}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slow.load_state_dict(state["slow"])
        self.windows_learned = list(state["windows_learned"])
        for name in self.state_attributes:
            current = getattr(self, name)
            if hasattr(current, "load_state_dict"):
                current.load_state_dict(state[name])
            elif isinstance(state[name], dict):
                device = self.context.device
                setattr(self, name, {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in state[name].items()})
            else:
                setattr(self, name, state[name])

    def slow_bytes(self) -> int:
        return state_bytes(self.slow.state_dict())


def _dump(value: Any) -> Any:
    return value.state_dict() if hasattr(value, "state_dict") else value


def _nbytes(value: Any) -> int:
    if hasattr(value, "nbytes") and callable(value.nbytes):  # a buffer
        return int(value.nbytes())
    if isinstance(value, nn.Module):
        return state_bytes(value.state_dict())
    if isinstance(value, dict):
        return state_bytes({str(k): v for k, v in value.items() if isinstance(v, torch.Tensor)})
    return 0
