"""LoRA: the slow weights never move during the window; the merge is exact."""

import copy

import torch

from components.training import predict_logits
from tests.test_methods import _method


def _lora(tiny_root, **config):
    return _method(tiny_root, "lora", raw={"epochs": 2, "rank": 2, "alpha": 4, "lr": 0.01, **config})


def test_adapter_training_leaves_every_slow_weight_bit_identical(tiny_root):
    method, stream = _lora(tiny_root)
    before = copy.deepcopy(method.slow.state_dict())
    adapted, losses = method.adapt(stream.window(1))
    assert losses[-1] < losses[0]  # the adapter did learn something
    base = adapted.get_base_model()
    for name, tensor in before.items():
        layer, _, kind = name.rpartition(".")
        current = base.get_submodule(layer)
        current = getattr(current, "base_layer", current)
        assert torch.equal(getattr(current, kind), tensor), f"slow weight {name} changed"


def test_merged_model_matches_slow_model_plus_adapter(tiny_root):
    method, stream = _lora(tiny_root)
    x = stream.window(0).x_test
    slow_only = predict_logits(method.slow, x)
    adapted, _ = method.adapt(stream.window(1))
    with_adapter = predict_logits(adapted, x)
    assert not torch.allclose(with_adapter, slow_only, atol=1e-3)  # the adapter matters
    method.merge(adapted)
    assert type(method.slow).__name__ == "SlowNet"  # no peft wrapper left
    torch.testing.assert_close(predict_logits(method.slow, x), with_adapter, rtol=1e-4, atol=1e-4)


def test_adapter_is_only_the_fast_state(tiny_root):
    method, stream = _lora(tiny_root)
    report = method.learn_window(stream.window(1))
    slow_bytes = method.slow_bytes()
    assert 0 < report.fast_state_bytes < slow_bytes / 2
