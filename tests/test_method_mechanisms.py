"""The mechanism of each method, not just that it runs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from components.buffers import ReservoirBuffer
from components.methods.error_memory import ErrorMemory
from components.methods.regularized import diagonal_fisher
from components.training import predict_logits

from tests.test_methods import _method


def test_reservoir_keeps_every_item_with_equal_probability():
    n_items, capacity, trials = 60, 10, 2000
    counts = np.zeros(n_items)
    x = torch.arange(n_items, dtype=torch.float32).unsqueeze(1)
    y = torch.zeros(n_items, dtype=torch.long)
    for trial in range(trials):
        buffer = ReservoirBuffer(capacity, 1)
        generator = torch.Generator().manual_seed(trial)
        for chunk in range(0, n_items, 7):  # offered in batches, as windows arrive
            buffer.add(x[chunk : chunk + 7], y[chunk : chunk + 7], generator)
        assert len(buffer) == capacity
        counts[buffer.x[:, 0].long().numpy()] += 1
    expected = trials * capacity / n_items
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(0.999, n_items - 1), f"inclusion counts far from uniform: {counts}"


def test_class_balanced_reservoir_gives_a_late_class_its_share():
    buffer = ReservoirBuffer(100, 1, class_balanced=True)
    generator = torch.Generator().manual_seed(0)
    buffer.add(torch.zeros(900, 1), torch.zeros(900, dtype=torch.long), generator)
    buffer.add(torch.ones(100, 1), torch.ones(100, dtype=torch.long), generator)
    assert len(buffer) == 100
    assert torch.bincount(buffer.y).tolist() == [50, 50]
    plain = ReservoirBuffer(100, 1)
    plain.add(torch.zeros(900, 1), torch.zeros(900, dtype=torch.long), generator)
    plain.add(torch.ones(100, 1), torch.ones(100, dtype=torch.long), generator)
    assert torch.bincount(plain.y, minlength=2)[1] < 30  # plain reservoir: about 10


def test_replay_buffer_holds_old_and_new_windows_within_its_bound(tiny_root):
    method, stream = _method(tiny_root, "replay", raw={"epochs": 1, "buffer_size": 64})
    method.learn_window(stream.window(1))
    classes = set(method.buffer.y[: len(method.buffer)].tolist())
    assert len(method.buffer) == 64
    assert classes & {0, 1, 2, 3} and classes & {4, 5}


def test_penalty_is_zero_at_the_anchor_and_grows_quadratically(tiny_root):
    method, stream = _method(tiny_root, "ewc", raw={"strength": 10.0, "fisher_samples": 64})
    method.set_anchor(stream.window(0))
    model = method.slow
    assert method.penalty(model).item() == 0.0
    direction = {k: torch.randn_like(v) for k, v in model.named_parameters()}
    values = []
    for scale in (0.01, 0.02):
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(method.anchor[k] + scale * direction[k])
        values.append(method.penalty(model).item())
    assert values[0] > 0
    assert values[1] == pytest.approx(4 * values[0], rel=1e-4)


def test_fisher_matches_per_sample_gradients_computed_one_by_one(tiny_root):
    method, stream = _method(tiny_root, "ewc")
    w = stream.window(0)
    x, y = w.x_train[:5], w.y_train[:5]
    fisher = diagonal_fisher(method.slow, x, y)
    manual = {k: torch.zeros_like(v) for k, v in method.slow.named_parameters()}
    for i in range(5):
        method.slow.zero_grad()
        F.cross_entropy(method.slow(x[i : i + 1]), y[i : i + 1]).backward()
        for k, p in method.slow.named_parameters():
            manual[k] += p.grad**2 / 5
    for k in manual:
        torch.testing.assert_close(fisher[k], manual[k], rtol=1e-4, atol=1e-7)


def test_l2_weighs_every_weight_equally(tiny_root):
    method, stream = _method(tiny_root, "l2", raw={"strength": 2.0})
    method.set_anchor(stream.window(0))
    assert all(torch.equal(v, torch.ones_like(v)) for v in method.importance.values())
    with torch.no_grad():
        for p in method.slow.parameters():
            p.add_(0.1)
    n = sum(p.numel() for p in method.slow.parameters())
    assert method.penalty(method.slow).item() == pytest.approx(2.0 / 2 * n * 0.01, rel=1e-4)


def test_lwf_keeps_old_class_outputs_closer_to_the_old_model_than_finetune(tiny_root):
    def drift(entry):
        method, stream = _method(tiny_root, entry, raw={"epochs": 3, "lr": 0.003, **({"alpha": 5.0} if entry == "lwf" else {})})
        x = stream.window(0).x_test
        before = F.log_softmax(predict_logits(method.slow, x)[:, :4], dim=1)
        method.learn_window(stream.window(1))
        after = F.log_softmax(predict_logits(method.slow, x)[:, :4], dim=1)
        return F.kl_div(after, before, reduction="batchmean", log_target=True).item()

    assert drift("lwf") < drift("finetune")


def test_fastslow_slow_weights_take_a_reptile_step_towards_the_fast_ones(tiny_root):
    method, stream = _method(tiny_root, "fastslow", raw={"beta": 0.25, "epochs": 1})
    before = {k: v.clone() for k, v in method.slow.state_dict().items()}
    fast = method.adapt(stream.window(1))
    fast_state = {k: v.clone() for k, v in fast.state_dict().items()}
    method.consolidate(fast)
    for name, value in method.slow.state_dict().items():
        expected = before[name] + 0.25 * (fast_state[name] - before[name])
        torch.testing.assert_close(value, expected)
    assert any(not torch.equal(fast_state[k], before[k]) for k in before)


def test_clser_stable_model_moves_less_than_the_plastic_one(tiny_root):
    method, stream = _method(tiny_root, "clser", raw={"epochs": 2, "buffer_size": 64})
    start = {k: v.clone() for k, v in method.slow.state_dict().items()}

    def moved(model):
        return sum((v - start[k]).norm() ** 2 for k, v in model.state_dict().items()).sqrt().item()

    method.learn_window(stream.window(1))
    assert 0 < moved(method.stable) < moved(method.plastic) < moved(method.slow)
    assert method.predictor() is method.stable


def test_slca_optimizer_holds_the_two_learning_rates_in_ratio(tiny_root):
    method, _ = _method(tiny_root, "slca", raw={"lr": 0.01, "backbone_lr_ratio": 0.01})
    backbone, head = method.parameter_groups()
    assert backbone["lr"] / head["lr"] == pytest.approx(0.01)
    assert {id(p) for p in head["params"]} == {id(p) for p in method.slow.head.parameters()}
    assert not {id(p) for p in backbone["params"]} & {id(p) for p in head["params"]}


def test_slca_keeps_class_statistics_and_aligns_only_the_head(tiny_root):
    method, stream = _method(tiny_root, "slca", raw={"epochs": 1, "align_epochs": 2})
    method.learn_window(stream.window(1))
    assert sorted(method.class_means) == [0, 1, 2, 3, 4, 5]
    hidden = method.slow.head.in_features
    assert method.class_covs[4].shape == (hidden, hidden)
    backbone = {k: v.clone() for k, v in method.slow.backbone.state_dict().items()}
    method.align_classifier()
    assert all(torch.equal(v, backbone[k]) for k, v in method.slow.backbone.state_dict().items())


@pytest.mark.parametrize("retrieval", ["lsh", "exact"])
def test_error_memory_fixes_a_stored_mistake_without_changing_any_weight(tiny_root, retrieval):
    method, stream = _method(tiny_root, "error_memory", raw={"capacity": 50, "retrieval": retrieval})
    window = stream.window(1)
    weights = {k: v.clone() for k, v in method.slow.state_dict().items()}
    wrong_before = predict_logits(method.predictor(), window.x_train).argmax(1) != window.y_train
    assert wrong_before.any()
    method.learn_window(window)
    assert all(torch.equal(v, weights[k]) for k, v in method.slow.state_dict().items())
    assert method.memory.size == 50  # bounded: the newest 50 mistakes
    stored = method.rows.x[:50]
    labels = method.rows.y[:50]
    fixed = predict_logits(method.predictor(), stored).argmax(1)
    assert (fixed == labels).float().mean() == 1.0
    reloaded, _ = _method(tiny_root, "error_memory", raw={"capacity": 50, "retrieval": retrieval})
    reloaded.load_state_dict(method.state_dict())
    assert torch.equal(predict_logits(reloaded.predictor(), stored), predict_logits(method.predictor(), stored))


def test_error_memory_lsh_totals_match_the_ring(tiny_root):
    """The bucket totals are exactly the sums of the entries in the ring, after eviction too."""
    method, stream = _method(tiny_root, "error_memory", raw={"capacity": 40, "only_mistakes": False, "tables": 3, "hash_bits": 6})
    method.learn_window(stream.window(1))
    method.learn_window(stream.window(2))
    m = method.memory
    counts = torch.zeros(len(m.totals))
    for codes in m.codes[: m.size]:
        counts[codes] += 1
    assert torch.equal(m.totals[:, -1], counts) and counts.sum() == 40 * 3


def test_error_memory_bucket_rows_are_the_bits_of_the_projection_signs():
    """Bucket row of table t = t * 2^bits + sum_b 2^b [projection_b > 0], whatever trick computes it."""
    tables, bits, n = 3, 5, 64
    memory = ErrorMemory(10, 8, 4, torch.device("cpu"), hash_bits=bits, tables=tables)
    projected = torch.randn(tables * bits, n, generator=torch.Generator().manual_seed(1))
    positive = (projected > 0).long().view(tables, bits, n)
    expected = (positive * (2 ** torch.arange(bits)).view(1, bits, 1)).sum(1) + (torch.arange(tables) * 2**bits).view(tables, 1)
    assert torch.equal(memory.codes_of(projected), expected)


def test_error_memory_served_correction_matches_the_unfused_computation(tiny_root):
    """The served model (head and hyperplanes in one product) gives the same log-probabilities
    as the slow model's softmax plus the memory's correction computed separately."""
    method, stream = _method(tiny_root, "error_memory", raw={"only_mistakes": False})
    method.learn_window(stream.window(1))
    x = stream.window(2).x_test
    with torch.no_grad():
        features = method.slow.features(x)
        errors, support = method.memory.correction(features, method.config.min_support)
        expected = (F.softmax(method.slow.head(features), dim=1) + errors / support).clamp_min(1e-6).log()
        served = method.predictor()(x)
    assert served.is_contiguous() and errors.abs().sum() > 0
    torch.testing.assert_close(served, expected, rtol=1e-4, atol=1e-5)


def test_error_memory_never_exceeds_its_bound_and_drops_the_oldest(tiny_root):
    method, stream = _method(tiny_root, "error_memory", raw={"capacity": 30, "only_mistakes": False})
    method.learn_window(stream.window(1))
    method.learn_window(stream.window(2))
    assert method.memory.size == 30
    assert set(method.rows.y[:30].tolist()) <= {6, 7}  # window 1's entries are gone


def test_ilora_slow_adapter_is_the_ema_of_the_fast_adapters_history(tiny_root):
    method, stream = _method(tiny_root, "ilora", raw={"epochs": 1, "ema": 0.9, "buffer_size": 64})
    starts, history = [], []
    attach, ema_step = method.attach_adapters, method.ema_step

    def recording_attach():
        model = attach()
        starts.extend(slow.detach().clone() for _, slow in method.pairs)
        return model

    def recording_step():
        history.append([fast.detach().clone() for fast, _ in method.pairs])
        ema_step()

    method.attach_adapters, method.ema_step = recording_attach, recording_step
    method.adapt(stream.window(1))
    assert len(history) >= 3  # one EMA update per optimizer step
    expected = starts
    for fast_params in history:
        expected = [0.9 * s + 0.1 * f for s, f in zip(expected, fast_params)]
    for (_, slow), want in zip(method.pairs, expected):
        torch.testing.assert_close(slow.detach(), want, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(slow, start) for (_, slow), start in zip(method.pairs, starts))


def test_ilora_serves_the_slow_adapter_merged_into_the_slow_model(tiny_root):
    method, stream = _method(tiny_root, "ilora", raw={"epochs": 1, "buffer_size": 64})
    x = stream.window(0).x_test
    model, _ = method.adapt(stream.window(1))
    model.set_adapter("slow")
    with_slow_adapter = predict_logits(model, x)
    model.set_adapter("fast")
    with_fast_adapter = predict_logits(model, x)
    model.set_adapter("slow")
    method.slow = model.merge_and_unload(adapter_names=["slow"])
    torch.testing.assert_close(predict_logits(method.slow, x), with_slow_adapter, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(with_fast_adapter, with_slow_adapter, atol=1e-4)


def test_kfpf_consolidation_moves_only_the_forgetting_prone_modules(tiny_root):
    method, stream = _method(tiny_root, "kfpf", raw={"epochs": 1, "buffer_size": 64, "fpf_steps": 7})
    report = method.learn_window(stream.window(1))
    assert len(report.losses["fpf"]) == 1  # one pass of 7 steps over sampled buffer rows
    assert report.samples_seen == len(stream.window(1).y_train) + 7 * 64
    before = {k: v.clone() for k, v in method.slow.state_dict().items()}
    method.finetune_forgetting_prone()
    moved = {k for k, v in method.slow.state_dict().items() if not torch.equal(v, before[k])}
    assert moved == {"head.weight", "head.bias", "backbone.7.weight", "backbone.7.bias"}  # head + last linear
    assert all(p.requires_grad for p in method.slow.parameters())  # the freeze is undone
