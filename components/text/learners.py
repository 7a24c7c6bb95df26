"""Text entries under `text.methods:`: which fast learner, with which knobs (validated, one
line per mistake), and consolidation, the outer slow loop: after a window, the slow model
moves `consolidation` of the way toward what the fast learner holds (its fast weights, or
the slow weights with its adapter or its memory merged)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from components.config import validate_model
from components.errors import ParamsError
from components.text.fast import DynamicEval, FastLearner, Static, TTTLora
from components.text.memory import NeuralMemory


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StaticConfig(_Config):
    learner: Literal["static"] = "static"


class DynamicEvalConfig(_Config):
    learner: Literal["dynamic_eval"] = "dynamic_eval"
    lr: float = Field(0.3, gt=0, description="SGD step on each segment just read")
    decay: float = Field(0.01, ge=0, le=1, description="share of the way back to the slow weights after each step")
    steps: int = Field(2, ge=1)
    reset: Literal["window", "document"] = "window"
    backprop: Literal["step", "segment"] = Field("step", description="through the segment's recurrence, or one "
                                                 "step of it from the scoring pass's states (components/text/fast.py)")


class TTTLoraConfig(_Config):
    learner: Literal["ttt_lora"] = "ttt_lora"
    lr: float = Field(0.01, gt=0, description="Adam on the adapter")
    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    steps: int = Field(1, ge=1)
    reset: Literal["document", "window"] = "document"
    target_modules: list[Literal["in_proj", "out_proj", "head"]] = Field(["in_proj", "out_proj", "head"], min_length=1)


class NeuralMemoryConfig(_Config):
    learner: Literal["neural_memory"] = "neural_memory"
    lr: float = Field(1.0, gt=0, description="step on the memory's recall loss per segment (per unit key energy)")
    momentum: float = Field(0.7, ge=0, lt=1, description="share of the last step's surprise carried on")
    forget: float = Field(0.02, ge=0, le=1, description="share of the memory forgotten at each write")
    scale: float = Field(30.0, gt=0, description="the values: scale x the loss-lowering direction at out_proj")
    reset: Literal["window", "document"] = "window"


LEARNERS: dict[str, type[_Config]] = {"static": StaticConfig, "dynamic_eval": DynamicEvalConfig, "ttt_lora": TTTLoraConfig,
                                      "neural_memory": NeuralMemoryConfig}
TextConfig = StaticConfig | DynamicEvalConfig | TTTLoraConfig | NeuralMemoryConfig


def parse_entry(entry: str, raw: dict[str, Any], source: str = "params.yaml") -> TextConfig:
    """The entry's config; its learner defaults to the entry's name."""
    block = {"learner": entry, **(raw or {})}
    if block["learner"] not in LEARNERS:
        raise ParamsError(f"{source}: text.methods.{entry}: unknown learner {block['learner']!r}; "
                          f"learners: {sorted(LEARNERS)}")
    return validate_model(LEARNERS[block["learner"]], block, source, f"text.methods.{entry}")  # type: ignore[return-value]


def make_learner(config: TextConfig, slow: nn.Module, seed: int) -> FastLearner:
    if isinstance(config, DynamicEvalConfig):
        return DynamicEval(slow, lr=config.lr, decay=config.decay, steps=config.steps, reset=config.reset,
                           backprop=config.backprop)
    if isinstance(config, TTTLoraConfig):
        return TTTLora(slow, lr=config.lr, rank=config.rank, alpha=config.alpha, steps=config.steps, reset=config.reset,
                       target_modules=tuple(config.target_modules), seed=seed)
    if isinstance(config, NeuralMemoryConfig):
        return NeuralMemory(slow, lr=config.lr, momentum=config.momentum, forget=config.forget, scale=config.scale,
                            reset=config.reset)
    return Static(slow)


def consolidate(slow: nn.Module, learner: FastLearner, share: float) -> None:
    """slow += share x (what the learner holds - slow); the static learner holds nothing."""
    if isinstance(learner, Static) or share == 0:
        return
    if isinstance(learner, TTTLora):
        held = learner.fast.merge_and_unload().state_dict()  # the slow weights with the adapter merged in
    elif isinstance(learner, NeuralMemory):
        held = slow.state_dict() | {"out_proj.weight": learner.merged_out_proj()}  # the memory merged into out_proj
    elif isinstance(learner, DynamicEval):
        held = learner.fast.state_dict()  # its fast weights (`model` may be a recording wrapper around them)
    else:
        raise TypeError(f"consolidate: no rule for learner {type(learner).__name__}")
    with torch.no_grad():
        for name, weight in slow.state_dict().items():
            weight.add_(share * (held[name] - weight))
