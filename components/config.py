"""Typed view of params.yaml: every knob the stages read, validated in one place.

A mistake in params.yaml becomes one line naming the key and what was expected, instead of
a traceback from deep inside a training loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from components.errors import ParamsError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The MNIST-1D generator's corruption knobs that a drift schedule may change.
DRIFT_KEYS = ("scale_coeff", "max_translation", "corr_noise_scale", "iid_noise_scale", "shear_scale")


class StreamParams(Strict):
    """A built-in MNIST-1D stream; window 0 is always the slow model's pretrain split.

    `mnist1d`: class-incremental, cut by `pretrain_classes` and `window_classes` from one
    generated set of `num_samples` rows. `mnist1d-drift`: domain-incremental, all ten classes
    in every window, each window generated with `num_samples` rows and the generator settings
    in its `drift` entry (window 0 = the first entry, usually `{}`: the generator's defaults).
    """

    name: str = "mnist1d-classinc"
    source: Literal["mnist1d", "mnist1d-drift"] = "mnist1d"
    num_samples: int = Field(12000, ge=100)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    pretrain_classes: list[int] = [0, 1, 2, 3]
    window_classes: list[list[int]] = [[4, 5], [6, 7], [8, 9]]
    drift: list[dict[str, float]] = Field(
        default_factory=lambda: [{}, {"corr_noise_scale": 0.5}, {"shear_scale": 1.5}, {"iid_noise_scale": 0.1}],
        min_length=2,
        description=f"per window, generator settings to change; keys among {DRIFT_KEYS}",
    )
    seed: int = 42


class ModelParams(Strict):
    channels: int = Field(32, ge=1)
    hidden: int = Field(128, ge=1)


class TrainParams(Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class EvaluationParams(Strict):
    """Continual evaluation inside each window (see components/evaluation.py)."""

    every_steps: int = Field(10, ge=0, description="evaluate every k optimizer steps; 0 = window ends only")
    subset_rows: int = Field(100, ge=1, description="fixed, seeded test rows per window")
    gap_tolerance: float = Field(0.01, ge=0, description="how close to the pre-window accuracy counts as recovered")
    prequential: bool = Field(False, description="test-then-train accuracy on each first-epoch batch")


class TrackingParams(Strict):
    ui_url: str = Field("http://127.0.0.1:5000", description="where `mlflow ui` serves, for links from Prefect")


class CompareParams(Strict):
    champion_metric: Literal["acc", "bwt", "forgetting", "min_acc", "wc_acc", "seconds_per_window"] = "acc"


class Params(Strict):
    seed: int = 0
    seeds: list[int] = Field([0], min_length=1, description="one run of every method per seed")
    device: str = "auto"
    threads: int = Field(2, ge=0)
    stream: StreamParams = StreamParams()
    model: ModelParams = ModelParams()
    pretrain: TrainParams = TrainParams()
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)
    evaluation: EvaluationParams = EvaluationParams()
    compare: CompareParams = CompareParams()
    tracking: TrackingParams = TrackingParams()

    def stream_dir(self, root: Path) -> Path:
        return root / "data" / "streams" / self.stream.name


def _describe(error: ValidationError, source: str, prefix: str = "") -> str:
    first = error.errors()[0]
    where = ".".join([prefix, *map(str, first["loc"])] if prefix else map(str, first["loc"])) or "(top level)"
    got = first.get("input")
    return f"{source}: {where}: {first['msg']} (got {got!r})"


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_describe(error, source)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return parse_params(raw, str(path))


def validate_model(model_cls: type[BaseModel], raw: dict[str, Any], source: str, prefix: str) -> BaseModel:
    """Validate one config block (a method's, found at `prefix`) with the same one-line errors."""
    try:
        return model_cls.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_describe(error, source, prefix)) from None
