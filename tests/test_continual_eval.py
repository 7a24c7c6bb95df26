"""Continual evaluation: min-ACC, WC-ACC and the stability gap on traces with known shapes."""

import pytest
import torch

from components.config import load_params
from components.data.loading import Stream
from components.evaluation import ContinualEvaluator, EvalPoint
from components.metrics import min_accuracy, stability_gap, worst_case_accuracy
from components.models import build_model

# Window 1 is learned over steps 0..50: accuracy on window 0 dips from 0.90 to 0.30 at step
# 20 and recovers to 0.895 at step 40. Window 2 (steps 50..60) pulls window 0 to 0.60.
TRACE = [
    EvalPoint(0, 1, (0.90, 0.00)),
    EvalPoint(10, 1, (0.50, 0.40)),
    EvalPoint(20, 1, (0.30, 0.70)),
    EvalPoint(30, 1, (0.70, 0.80)),
    EvalPoint(40, 1, (0.895, 0.85)),
    EvalPoint(50, 1, (0.90, 0.90)),
    EvalPoint(50, 2, (0.90, 0.90, 0.00)),
    EvalPoint(60, 2, (0.60, 0.40, 0.95)),
]


def test_gap_depth_and_recovery_on_a_known_dip():
    gap = stability_gap(TRACE, window=1, tolerance=0.01)
    assert gap["depth"] == pytest.approx(0.60)
    assert gap["recovery_steps"] == 20  # from the low at step 20 back within 0.01 at step 40


def test_gap_that_never_recovers_has_no_recovery_steps():
    gap = stability_gap(TRACE, window=2, tolerance=0.01)
    assert gap["depth"] == pytest.approx(0.90 - 0.50)  # mean of windows 0 and 1: 0.90 -> 0.50
    assert gap["recovery_steps"] is None


def test_min_acc_takes_the_lowest_point_after_each_window_was_learned():
    # window 0: lowest after it was learned = 0.30 (during window 1); window 1: 0.40 (window 2)
    assert min_accuracy(TRACE) == pytest.approx((0.30 + 0.40) / 2)


def test_wc_acc_weights_current_accuracy_and_min_acc():
    k = 3
    assert worst_case_accuracy(TRACE) == pytest.approx(0.95 / k + (1 - 1 / k) * (0.30 + 0.40) / 2)


def test_evaluator_records_every_k_steps_on_fixed_rows(tiny_root):
    params = load_params(tiny_root / "params.yaml")
    stream = Stream(params.stream_dir(tiny_root))
    model = build_model(params.model, 40, 10)
    evaluator = ContinualEvaluator(stream, every=3, subset=20, seed=0)
    evaluator.start_window(1, model)
    for _ in range(7):
        evaluator.on_step(model)
    evaluator.end_window(model)
    assert [p.step for p in evaluator.points] == [0, 3, 6, 7]
    assert all(len(p.accuracies) == 2 for p in evaluator.points)
    # Same model, same fixed subset: the same accuracy at every point.
    assert len({p.accuracies for p in evaluator.points}) == 1
    again = ContinualEvaluator(stream, every=3, subset=20, seed=0)
    assert torch.equal(again._rows(0)[1], evaluator._rows(0)[1])


def test_prequential_scores_each_batch_once_before_training_on_it(tiny_root):
    from components.training import accuracy

    params = load_params(tiny_root / "params.yaml")
    stream = Stream(params.stream_dir(tiny_root))
    model = build_model(params.model, 40, 10)
    window = stream.window(0)
    evaluator = ContinualEvaluator(stream, every=0, subset=20, seed=0, prequential=True)
    evaluator.start_window(1, model)
    halves = [(window.x_test[:50], window.y_test[:50]), (window.x_test[50:], window.y_test[50:])]
    for x, y in halves:
        evaluator.before_step(model, x, y, epoch=0)
    evaluator.before_step(model, window.x_train, window.y_train, epoch=1)  # a second pass is not scored
    assert evaluator.prequential_accuracy == pytest.approx(accuracy(model, window.x_test, window.y_test))
    evaluator.start_window(2, model)
    assert evaluator.prequential_accuracy is None


def test_prequential_is_logged_when_enabled(tiny_root):
    from components.methods import build_method
    from components.methods.base import MethodContext
    from components.protocol import absorb_window

    params = load_params(tiny_root / "params.yaml")
    stream = Stream(params.stream_dir(tiny_root))
    evaluator = ContinualEvaluator(stream, every=0, subset=20, seed=0, prequential=True)
    context = MethodContext(stream, torch.device("cpu"), torch.Generator().manual_seed(0), evaluator.on_step, evaluator.before_step)
    method = build_method("finetune", {"epochs": 2}, build_model(params.model, 40, 10), context)
    evaluator.start_window(1, method.predictor())
    absorb_window(method, stream, 1)
    assert 0.0 <= evaluator.prequential_accuracy <= 1.0
    assert evaluator._prequential[1] == len(stream.window(1).y_train)  # first epoch only
