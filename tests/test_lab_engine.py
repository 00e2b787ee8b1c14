from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, f1_score

from weightlab.errors import InvalidValueError, InvalidWeightError, ShapeMismatchError
from weightlab.functional import LossParts
from weightlab.lab.architectures import build_stacked
from weightlab.lab.data import load_data
from weightlab.lab.engine import (
    EVAL_ROWS,
    stacked_logits,
    stacked_val_metric,
    train_single,
    train_stack,
)
from weightlab.lab.optim import OPTIMIZERS, make_optimizer
from weightlab.lab.trial import TrialConfig
from weightlab.lab.weightings import LOSS_WEIGHTINGS, cross_entropy_parts, resolve_weighting


def _parts(per_sample, target, class_weight):
    """A per-sample class-weighted loss as the engine's parts: (sum, sum of applied weights)."""
    return LossParts(per_sample.sum(), class_weight[target].sum())


# one intra-op thread and digits-lt (ratio 10) from tests/conftest.py
pytestmark = pytest.mark.usefixtures("one_thread")


def _configs(arch, optimizer, *, epochs=2, hidden=8, lr=None, seeds=(0, 1, 2)):
    return [
        TrialConfig(
            "digits-lt",
            arch,
            optimizer,
            "power",
            alpha,
            seed=seed,
            epochs=epochs,
            lr=lr,
            batch_size=64,
            model_params=(("hidden", hidden),),
        )
        for seed, alpha in zip(seeds, (0.0, 0.5, 1.0), strict=False)
    ]


def _weights(data, configs):
    counts = data.train_counts.astype(np.float64)
    return [counts ** -(c.alpha or 0.0) for c in configs]


def _assert_same(stacked, single):
    assert stacked.status == single.status == "done"
    np.testing.assert_allclose(stacked.train_loss, single.train_loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stacked.val_metric, single.val_metric, atol=1e-6)
    np.testing.assert_allclose(stacked.test_logits, single.test_logits, rtol=1e-4, atol=1e-4)
    assert stacked.metrics == pytest.approx(single.metrics, abs=1e-4)


@pytest.mark.parametrize(
    "arch,optimizer",
    [
        ("mlp", "sgd"), ("mlp", "adam"), ("mlp", "adamw"), ("mlp", "rmsprop"),
        ("cnn", "sgd"), ("cnn", "adam"),
        ("gru", "sgd"), ("gru", "adam"),
        ("lstm", "sgd"), ("lstm", "adam"),
    ],
)  # fmt: skip
def test_slice_equals_trial_trained_alone(digits, arch, optimizer):
    configs = _configs(arch, optimizer, lr=0.1 if optimizer == "sgd" else 0.01)
    weights = _weights(digits, configs)
    results = train_stack(digits, configs, weights)
    assert [r.config for r in results] == configs
    for k in (0, 2):
        _assert_same(results[k], train_single(digits, configs[k], weights[k]))
    assert len(results[0].train_loss) == 2 and len(results[0].test_logits) == 500
    assert {"accuracy", "balanced_accuracy", "macro_f1"} <= set(results[0].metrics)
    assert results[0].timings["stack_train"] > 0
    assert results[0].train_loss != results[1].train_loss  # slices differ


def test_engine_learns_with_defaults(digits):
    configs = _configs("mlp", "adam", epochs=20, hidden=64, seeds=(0,))
    result = train_stack(digits, configs, _weights(digits, configs))[0]
    assert result.train_loss[-1] < result.train_loss[0] / 2
    assert result.metrics["balanced_accuracy"] > 0.8


def test_last_checkpoint_and_macro_f1(digits):
    configs = _configs("mlp", "sgd", epochs=3, lr=0.1)
    weights = _weights(digits, configs)
    stacked = train_stack(digits, configs, weights, val_metric="macro_f1", checkpoint="last")
    single = train_single(digits, configs[1], weights[1], val_metric="macro_f1", checkpoint="last")
    _assert_same(stacked[1], single)


def _nan_after(steps, marker):
    """A loss that turns NaN for the slice whose class_weight[0] == marker after `steps` calls."""
    calls = {"n": 0}

    def loss_fn(logits, target, class_weight):
        calls["n"] += 1
        poison = torch.where(class_weight[0] == marker, float("nan"), 0.0)
        ce = F.cross_entropy(logits, target, weight=class_weight, reduction="none")
        return _parts(ce + poison if calls["n"] > steps else ce, target, class_weight)

    return loss_fn


def test_failing_slice_is_isolated(digits):
    configs = _configs("mlp", "adam", epochs=3)
    weights = [np.ones(10), np.full(10, 7.0), np.full(10, 2.0)]
    results = train_stack(digits, configs, weights, loss_fn=_nan_after(8, 7.0))  # step 9: epoch 2
    assert [r.status for r in results] == ["done", "failed", "done"]
    failed = results[1]
    assert failed.reason == "non-finite loss at epoch 2"
    assert len(failed.train_loss) == 1 and len(failed.val_metric) == 1
    assert failed.test_logits == [] and failed.metrics == {}
    for k in (0, 2):  # the healthy slices train as if alone
        _assert_same(results[k], train_single(digits, configs[k], weights[k]))
    alone = train_single(digits, configs[1], weights[1], loss_fn=_nan_after(8, 7.0))
    assert alone.status == "failed" and alone.reason == failed.reason
    assert alone.train_loss == pytest.approx(failed.train_loss, rel=1e-5)


def test_custom_loss_fn_is_vmapped(digits):
    configs = _configs("mlp", "sgd", lr=0.1)
    weights = _weights(digits, configs)

    def plain_ce(logits, target, class_weight):
        ce = F.cross_entropy(logits, target, weight=class_weight, reduction="none")
        return _parts(ce, target, class_weight)

    a = train_stack(digits, configs, weights)
    b = train_stack(digits, configs, weights, loss_fn=plain_ce)
    for x, y in zip(a, b, strict=True):
        _assert_same(x, y)


def test_user_module_in_train_single(digits):
    config = _configs("mlp", "adam", epochs=2)[0]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 10))
    result = train_single(digits, config, np.ones(10), model=model)
    assert result.status == "done" and len(result.test_logits[0]) == 10


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_one_optimizer_over_a_stack_equals_separate_ones(name):
    torch.manual_seed(0)
    init = torch.randn(3, 4, 5)
    stacked = torch.nn.Parameter(init.clone())
    singles = [torch.nn.Parameter(init[k].clone()) for k in range(3)]
    opt = make_optimizer(name, [stacked], lr=0.01)
    opts = [make_optimizer(name, [p], lr=0.01) for p in singles]
    for _ in range(5):
        grad = torch.randn(3, 4, 5) * torch.tensor([1.0, 100.0, 0.01]).view(3, 1, 1)
        stacked.grad = grad.clone()
        opt.step()
        for k, (p, o) in enumerate(zip(singles, opts, strict=True)):
            p.grad = grad[k].clone()
            o.step()
    for k in range(3):
        torch.testing.assert_close(stacked.detach()[k], singles[k].detach())


def test_val_metrics_match_sklearn():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, 4, generator=g)
    target = torch.randint(0, 4, (40,), generator=g)
    target[target == 3] = 2  # class 3 absent from the targets
    target[0] = 0  # make sure class 0 is present
    bal = stacked_val_metric(logits, target, "balanced_accuracy")
    f1 = stacked_val_metric(logits, target, "macro_f1")
    for k in range(3):
        pred = logits[k].argmax(1).numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
            bal_ref = balanced_accuracy_score(target.numpy(), pred)
            f1_ref = f1_score(target.numpy(), pred, average="macro")
        assert bal[k].item() == pytest.approx(bal_ref)
        assert f1[k].item() == pytest.approx(f1_ref)


def test_bad_inputs(digits):
    configs = _configs("mlp", "sgd")
    with pytest.raises(ShapeMismatchError) as err:
        train_stack(digits, configs, [np.ones(9)] * 3)
    assert str(err.value) == (
        "Expected `class_weights` to have one (C,) = (10,) vector per config, shape (3, 10), "
        "but got shape (3, 9). Pass one weight per class for every config."
    )
    with pytest.raises(InvalidWeightError) as err:
        train_stack(digits, configs, [np.ones(10), -np.ones(10), np.ones(10)])
    assert str(err.value).startswith(
        "Expected `class_weights` to be finite, non-negative and not all zero, but got "
        "invalid rows [1]: [-1.0,"
    )
    mixed = [*configs[:2], _configs("cnn", "sgd")[2]]
    with pytest.raises(InvalidValueError) as err:
        train_stack(digits, mixed, [np.ones(10)] * 3)
    assert str(err.value) == (
        "Expected `configs` to differ only in 'weighting', 'alpha', 'seed', 'params', 'lr', "
        "'weight_decay' (one stack), but got "
        "configs that also differ in 'arch'. Group trials by TrialConfig.stack_key and train "
        "each group separately."
    )
    with pytest.raises(InvalidValueError) as err:
        train_stack(digits, configs, [np.ones(10)] * 3, val_metric="auc")
    assert str(err.value) == (
        "Expected `val_metric` to be one of 'balanced_accuracy', 'macro_f1', but got 'auc'. "
        "Pick one."
    )
    bad_opt = [TrialConfig("digits-lt", "mlp", "lion", "none", None, seed=0, epochs=1)]
    with pytest.raises(InvalidValueError, match="Expected `optimizer` to be one of 'sgd'"):
        train_stack(digits, bad_opt, [np.ones(10)])
    zero_epochs = [TrialConfig("digits-lt", "mlp", "sgd", "none", None, seed=0, epochs=0)]
    with pytest.raises(InvalidValueError) as err:
        train_single(digits, zero_epochs[0], np.ones(10))
    assert str(err.value) == (
        "Expected `epochs` to be a positive integer, but got 0. Set epochs=1 or more."
    )
    with pytest.raises(InvalidValueError, match="Expected `configs` to hold at least one"):
        train_stack(digits, [], [])


@pytest.mark.parametrize("arch", ["mlp", "cnn", "gru", "lstm"])
def test_ldam_with_the_cosine_head_slice_equals_trial_alone(digits, arch):
    configs = [
        TrialConfig("digits-lt", arch, "sgd", "ldam", None, seed=s, epochs=2,
                    model_params=(("head", "cosine"), ("hidden", 8)))
        for s in (0, 1)
    ]  # fmt: skip
    counts = digits.train_counts
    fns = [resolve_weighting(c, counts).loss for c in configs]
    weights = [np.ones(digits.num_classes)] * 2
    results = train_stack(digits, configs, weights, loss_fn=fns)
    for k in range(2):
        _assert_same(results[k], train_single(digits, configs[k], weights[k], loss_fn=fns[k]))
    assert np.abs(results[0].test_logits).max() <= 1.0 + 1e-6  # cosines


def _smoothed_ce(logits, target, class_weight):
    ce = F.cross_entropy(
        logits, target, weight=class_weight, reduction="none", label_smoothing=0.1
    )
    return _parts(ce, target, class_weight)


def test_one_loss_per_slice(digits):
    configs = _configs("mlp", "adam")
    weights = _weights(digits, configs)
    losses = [cross_entropy_parts, _smoothed_ce, cross_entropy_parts]
    results = train_stack(digits, configs, weights, loss_fn=losses)
    for k in range(3):
        _assert_same(results[k], train_single(digits, configs[k], weights[k], loss_fn=losses[k]))
    with pytest.raises(InvalidValueError) as err:
        train_stack(digits, configs, weights, loss_fn=losses[:2])
    assert str(err.value) == (
        "Expected `loss_fn` to be one loss function or a sequence of 3 (one per config), but "
        "got a sequence of 2. Pass one callable per config."
    )


@pytest.mark.parametrize("arch", ["mlp", "cnn", "gru"])
def test_stacked_logits_in_blocks_equal_one_pass_in_order(arch):
    data = load_data("digits-lt").inputs(arch)
    k = 32
    model = build_stacked(arch, data.x_test.shape[1:], 10, seeds=range(k), hidden=8)
    assert len(data.x_test) > EVAL_ROWS // k  # more than one block
    with torch.no_grad():
        blocked = stacked_logits(model, data.x_test, k)
        whole = model(data.x_test.unsqueeze(0).expand(k, *data.x_test.shape))
    assert blocked.shape == (k, len(data.x_test), 10)
    torch.testing.assert_close(blocked, whole, atol=1e-5, rtol=1e-5)


def test_stacked_logits_of_one_model_is_one_block():
    model = build_stacked("mlp", (4,), 3, seeds=[0], hidden=8)
    x = torch.rand(EVAL_ROWS, 4)
    with torch.no_grad():
        torch.testing.assert_close(
            stacked_logits(model, x, 1), model(x.unsqueeze(0)), atol=0, rtol=0
        )


@pytest.mark.parametrize("name", LOSS_WEIGHTINGS)
def test_every_lab_weighting_trains_the_same_in_a_stack_as_alone(digits, name):
    # non-uniform class weights, each slice with its own
    weights = [np.linspace(0.5, 2.0, 10), np.linspace(2.0, 0.5, 10), np.ones(10)]
    head = resolve_weighting(TrialConfig("d", "mlp", "sgd", name, None, 0), [1]).model_params
    configs = [
        TrialConfig("digits-lt", "mlp", "adam", name, None, seed=s, epochs=2,
                    model_params=tuple(sorted({"hidden": 8, **head}.items())))
        for s in (0, 1, 2)
    ]  # fmt: skip
    fns = [resolve_weighting(c, digits.train_counts).loss for c in configs]
    assert fns[0] is fns[1] is fns[2]  # one loss object: its slices are computed together
    results = train_stack(digits, configs, weights, loss_fn=fns)
    assert [r.status for r in results] == ["done"] * 3
    for k in range(3):
        _assert_same(results[k], train_single(digits, configs[k], weights[k], loss_fn=fns[k]))
    assert results[0].train_loss != results[1].train_loss  # the weights reach the loss
