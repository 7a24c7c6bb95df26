"""Every method: learns the window, survives save/load, and is deterministic on the CPU."""

import numpy as np
import pytest
import torch

from components.checkpoint import load_state, save_state
from components.config import load_params
from components.data.loading import Stream
from components.methods import REGISTRY, build_method
from components.methods.base import MethodContext
from components.models import build_model
from components.protocol import absorb_window, evaluate_windows
from components.runtime import configure_torch
from components.training import predict_logits

METHODS = sorted(REGISTRY)


def _method(root, entry, seed=0, raw=None):
    params = load_params(root / "params.yaml")
    generator = configure_torch(1, seed)
    stream = Stream(params.stream_dir(root))
    slow = build_model(params.model, stream.manifest.num_features, stream.num_classes)
    return build_method(entry, raw or params.methods[entry], slow, MethodContext(stream, torch.device("cpu"), generator)), stream


def _matrix(root, entry):
    method, stream = _method(root, entry)
    rows = [evaluate_windows(method.predictor(), stream)]
    rows += [absorb_window(method, stream, k).accuracies for k in range(1, stream.num_windows)]
    return np.array(rows)


@pytest.mark.parametrize("entry", METHODS)
def test_same_seed_gives_identical_metrics(tiny_root, entry):
    np.testing.assert_array_equal(_matrix(tiny_root, entry), _matrix(tiny_root, entry))


@pytest.mark.parametrize("entry", METHODS)
def test_state_survives_save_and_load(tiny_root, tmp_path, entry):
    method, stream = _method(tiny_root, entry)
    method.learn_window(stream.window(1))
    save_state(method.state_dict(), tmp_path / "state.pt")
    restored, _ = _method(tiny_root, entry, seed=1)  # different init: the state must overwrite it
    restored.load_state_dict(load_state(tmp_path / "state.pt"))
    x = stream.window(1).x_test
    torch.testing.assert_close(predict_logits(restored.predictor(), x), predict_logits(method.predictor(), x))
    assert restored.windows_learned == [1]


def test_finetune_learns_the_new_window(tiny_root):
    method, stream = _method(tiny_root, "finetune", raw={"epochs": 30, "lr": 0.003})
    before = evaluate_windows(method.predictor(), stream)[1]
    result = absorb_window(method, stream, 1)
    losses = result.report.losses["train"]
    assert losses[-1] < losses[0] / 2
    assert result.accuracies[1] >= before + 0.2  # an untrained net on 189 rows: a clear rise, not mastery


def test_joint_trains_on_everything_seen(tiny_root):
    method, stream = _method(tiny_root, "joint")
    report = method.learn_window(stream.window(1))
    rows = len(stream.window(0).y_train) + len(stream.window(1).y_train)
    assert report.samples_seen == rows * method.config.epochs


def test_distill_teacher_keeps_slow_logits_for_known_classes(tiny_root):
    method, stream = _method(tiny_root, "distill")
    window = stream.window(1)
    fast = build_model(load_params(tiny_root / "params.yaml").model, 40, 10)
    teacher = method.teacher_logits(fast, window)
    slow = predict_logits(method.slow, window.x_train)
    torch.testing.assert_close(teacher[:, :4], slow[:, :4])
    # new classes lifted so the teacher labels the window's rows with the window's classes
    assert (teacher.argmax(1) >= 4).float().mean() > 0.5
