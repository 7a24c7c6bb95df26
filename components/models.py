"""The slow model: a built-in backbone (1D CNN, MLP, 2D CNN) over a linear head, or the
user's own model from a factory in the project."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from components.config import ModelParams
from components.errors import ParamsError
from components.layout import REPO_ROOT


class SlowNet(nn.Module):
    """Conv1d feature extractor + linear classifier for fixed-length 1D signals.

    `features` gives the hidden representation that methods such as SLCA or an error memory
    key on; `head` maps it to class logits.
    """

    def __init__(self, in_len: int, num_classes: int, channels: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.in_len = in_len
        self.num_classes = num_classes
        reduced = (in_len + 3) // 4
        self.backbone = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(channels * reduced, hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x.unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SlowMLP(nn.Module):
    """Two hidden layers over a flat feature vector, for tabular streams; same interface as SlowNet."""

    def __init__(self, in_len: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.in_len = in_len
        self.num_classes = num_classes
        self.backbone = nn.Sequential(nn.Linear(in_len, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SlowCNN2d(nn.Module):
    """`depth` conv + pool blocks (each halves the image) and a hidden layer over images given
    as flat rows (the stream's `x` holds channels x height x width values per row, row-major);
    same interface as SlowNet."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, channels: int = 32, hidden: int = 128,
                 depth: int = 2) -> None:
        super().__init__()
        c, h, w = image_shape
        if min(h, w) >> depth < 1:
            raise ParamsError(f"params.yaml: model.depth: {depth} pooling blocks shrink a {h} x {w} image to nothing")
        self.in_len = c * h * w
        self.num_classes = num_classes
        blocks: list[nn.Module] = []
        for block in range(depth):
            blocks += [nn.Conv2d(c if block == 0 else channels, channels, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.backbone = nn.Sequential(
            nn.Unflatten(1, (c, h, w)),
            *blocks,
            nn.Flatten(),
            nn.Linear(channels * (h >> depth) * (w >> depth), hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def image_shape(params: ModelParams, in_len: int) -> tuple[int, int, int]:
    """[channels, height, width] of a row: `model.image_shape`, or one square channel."""
    if params.image_shape is None:
        side = math.isqrt(in_len)
        if side * side != in_len:
            raise ParamsError(f"params.yaml: model.image_shape: rows of {in_len} values are not a square image; "
                              "give [channels, height, width]")
        return (1, side, side)
    c, h, w = params.image_shape
    if c * h * w != in_len or min(h, w) < 4:
        raise ParamsError(f"params.yaml: model.image_shape: {c} x {h} x {w} = {c * h * w} values per row; the stream "
                          f"has {in_len} (and height and width must be at least 4)")
    return (c, h, w)


def build_model(params: ModelParams, in_len: int, num_classes: int, root: Path = REPO_ROOT) -> nn.Module:
    """The slow model params describe, for rows of `in_len` values and `num_classes` classes
    (a `custom` factory is imported from the project at `root`)."""
    if params.kind == "mlp":
        return SlowMLP(in_len, num_classes, hidden=params.hidden)
    if params.kind == "cnn2d":
        return SlowCNN2d(image_shape(params, in_len), num_classes, channels=params.channels, hidden=params.hidden,
                         depth=params.depth)
    if params.kind == "custom":
        assert params.factory is not None  # the config requires it for kind: custom
        return custom_model(params.factory, params.kwargs, in_len, num_classes, root)
    return SlowNet(in_len, num_classes, channels=params.channels, hidden=params.hidden)


CUSTOM_MODELS = "custom_models"  # where `model.factory` modules live (a DVC dependency of pretrain and stream)

# What a method may need of the slow model beyond logits from `forward` (README "Your own
# model"). Methods declare theirs (`Method.requires`); `missing_parts` checks a model.
MODEL_PARTS = {
    "features": "features(x): the hidden representation that `head` maps to logits",
    "head": "head: an nn.Linear from features(x) to the logits",
    "backbone": "backbone: the module that computes features(x), holding the parameters before the head",
}


def missing_parts(model: nn.Module, parts: tuple[str, ...]) -> list[str]:
    checks = {
        "features": lambda: callable(getattr(model, "features", None)),
        "head": lambda: isinstance(getattr(model, "head", None), nn.Linear),
        "backbone": lambda: isinstance(getattr(model, "backbone", None), nn.Module),
    }
    return [MODEL_PARTS[part] for part in parts if not checks[part]()]


def custom_model(factory: str, kwargs: dict[str, Any], in_len: int, num_classes: int, root: Path) -> nn.Module:
    """`function(in_features, num_classes, **kwargs)` from 'package.module:function', a module
    inside the project (its code is versioned with it; a shared params.yaml must not run code
    from elsewhere). The result must map [n, in_len] rows to [n, num_classes] logits."""
    module_name, function_name = factory.split(":")
    where = f"params.yaml: model.factory: {factory}"
    project = Path(root).resolve()
    for name in list(sys.modules):  # a module of that name imported from another project: not this one
        if name == module_name.split(".")[0] or name.startswith(module_name.split(".")[0] + "."):
            file = getattr(sys.modules[name], "__file__", None)
            if file is None or not Path(file).resolve().is_relative_to(project):
                del sys.modules[name]
    importlib.invalidate_caches()
    added = str(project) not in sys.path
    if added:
        sys.path.insert(0, str(project))
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - the user's module: any failure is theirs, in one line
        raise ParamsError(f"{where}: cannot import {module_name} ({type(error).__name__}: {error})") from None
    finally:
        if added:
            sys.path.remove(str(project))
    origin = Path(getattr(module, "__file__", None) or "/").resolve()
    if not origin.is_relative_to(project / CUSTOM_MODELS):
        raise ParamsError(f"{where}: {module_name} is not a module under {CUSTOM_MODELS}/ in the project ({project}); "
                          f"put your model's code there (a DVC dependency of pretrain and stream)")
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ParamsError(f"{where}: {module_name} has no function '{function_name}'")
    try:
        model = function(in_len, num_classes, **kwargs)
    except Exception as error:  # noqa: BLE001
        raise ParamsError(f"{where}: calling it with ({in_len}, {num_classes}, **{kwargs}) failed: "
                          f"{type(error).__name__}: {error}") from None
    if not isinstance(model, nn.Module):
        raise ParamsError(f"{where}: returned {type(model).__name__}, expected a torch.nn.Module")
    with torch.no_grad():
        try:
            out = model.eval()(torch.zeros(2, in_len))
        except Exception as error:  # noqa: BLE001
            raise ParamsError(f"{where}: forward on 2 rows of {in_len} values failed: {type(error).__name__}: {error}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ParamsError(f"{where}: returns shape {shape} for 2 rows; expected [2, {num_classes}] (logits per class)")
    return model.train()


def adaptable_layers(model: nn.Module) -> list[str]:
    """Names of the Conv1d, Conv2d and Linear layers: the default targets for a LoRA adapter."""
    return [name for name, module in model.named_modules() if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def state_bytes(tensors: dict[str, torch.Tensor] | list[torch.Tensor]) -> int:
    values = tensors.values() if isinstance(tensors, dict) else tensors
    return int(sum(t.numel() * t.element_size() for t in values))


class ClassProbabilities(nn.Module):
    """What the registry serves: class probabilities (each row sums to 1) from a predictor's
    logits or log-probabilities; column i is class i of the stream's manifest."""

    def __init__(self, predictor: nn.Module) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.predictor(x), dim=1)
