"""Per-slice settings and slices leaving a stack: each slice still trains as it would alone.

References: :func:`train_single` (a plain model and a plain optimizer) for
per-slice learning rates, weight decay and deferred re-weighting; the same
stack without early stopping or pruning for the slices that stay.
"""

from __future__ import annotations

import numpy as np
import pytest

from weightlab.errors import InvalidValueError
from weightlab.lab.engine import train_single, train_stack
from weightlab.lab.trial import TrialConfig
from weightlab.lab.weightings import resolve_weighting

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(seed, optimizer="adam", arch="mlp", epochs=3, **kw):
    return TrialConfig(
        "digits-lt",
        arch,
        optimizer,
        kw.pop("weighting", "none"),
        kw.pop("alpha", None),
        seed=seed,
        epochs=epochs,
        model_params=kw.pop("model_params", (("hidden", 8),)),
        **kw,
    )


def _close(a, b, tol=1e-4):
    assert a.status == b.status
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.val_metric, b.val_metric, rtol=tol, atol=tol)
    if a.test_logits or b.test_logits:
        np.testing.assert_allclose(a.test_logits, b.test_logits, rtol=1e-2, atol=1e-2)


def _ones(n):
    return [[1.0] * 10] * n


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_each_slice_trains_at_its_own_learning_rate(digits, optimizer):
    cfgs = [_cfg(0, optimizer, lr=0.001), _cfg(1, optimizer, lr=0.02), _cfg(2, optimizer)]
    stacked = train_stack(digits, cfgs, _ones(3))
    for cfg, res in zip(cfgs, stacked, strict=True):
        _close(res, train_single(digits, cfg, [1.0] * 10))
    assert stacked[0].val_metric != stacked[1].val_metric


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_each_slice_has_its_own_decoupled_weight_decay(digits, optimizer):
    cfgs = [
        _cfg(0, optimizer, weight_decay=0.5),
        _cfg(0, optimizer, weight_decay=0.0),
        _cfg(0, optimizer),
    ]
    stacked = train_stack(digits, cfgs, _ones(3))
    for cfg, res in zip(cfgs, stacked, strict=True):
        _close(res, train_single(digits, cfg, [1.0] * 10))
    assert stacked[0].train_loss != stacked[1].train_loss
    # adamw's own decay (0.01) is what weight_decay=None means
    if optimizer == "adamw":
        _close(stacked[2], train_single(digits, _cfg(0, optimizer, weight_decay=0.01), [1.0] * 10))


def test_deferred_reweighting_switches_the_weights_at_its_epoch(digits):
    cfgs = [
        _cfg(
            s,
            "sgd",
            weighting="ldam",
            params=(("drw_start", 0.5),),
            epochs=4,
            model_params=(("head", "cosine"), ("hidden", 8)),
        )
        for s in (0, 1)
    ]
    ws = [resolve_weighting(c, digits.train_counts) for c in cfgs]
    assert ws[0].drw_epoch(4) == 2 and ws[0].late_class_weight is not None
    stacked = train_stack(
        digits,
        cfgs,
        [w.class_weight for w in ws],
        loss_fn=[w.loss for w in ws],
        late_class_weights=[w.late_class_weight for w in ws],
        drw_epochs=[2, 4],
    )
    alone = train_single(
        digits,
        cfgs[0],
        ws[0].class_weight,
        loss_fn=ws[0].loss,
        late_class_weight=ws[0].late_class_weight,
        drw_epoch=2,
    )
    _close(stacked[0], alone)
    never = train_single(digits, cfgs[1], ws[1].class_weight, loss_fn=ws[1].loss)
    _close(stacked[1], never)
    assert stacked[0].train_loss[2:] != never.train_loss[2:]


def test_a_pruned_slice_leaves_and_the_others_train_on_unchanged(digits):
    cfgs = [_cfg(s, "adam", epochs=4) for s in (0, 1, 2)]
    calls = []

    def prune_middle(epoch, slices, scores):
        calls.append((epoch, list(slices)))
        return {1: "below the rung"} if epoch == 2 else {}

    full = train_stack(digits, cfgs, _ones(3))
    cut = train_stack(digits, cfgs, _ones(3), on_epoch=prune_middle)
    assert calls == [(1, [0, 1, 2]), (2, [0, 1, 2]), (3, [0, 2]), (4, [0, 2])]
    assert cut[1].status == "pruned" and cut[1].reason == "below the rung"
    assert cut[1].val_metric == pytest.approx(full[1].val_metric[:2], abs=1e-5)
    assert not cut[1].metrics and not cut[1].test_logits
    for i in (0, 2):
        _close(cut[i], full[i], tol=1e-5)


def test_patience_stops_a_slice_at_its_best_epoch(digits):
    cfgs = [_cfg(s, "sgd", epochs=15, lr=1.0) for s in (0, 1)]
    full = train_stack(digits, cfgs, _ones(2))
    early = train_stack(digits, cfgs, _ones(2), patience=2)
    alone = [train_single(digits, c, [1.0] * 10, patience=2) for c in cfgs]
    for e, a in zip(early, alone, strict=True):
        _close(e, a, tol=5e-3)  # lr=1 amplifies float rounding (stack vs plain kernels)
        assert e.extra.get("stopped_epoch") == a.extra.get("stopped_epoch")
        stop = e.extra.get("stopped_epoch")
        if stop:  # stopped `patience` epochs after its best one, reporting that best epoch
            assert len(e.val_metric) == stop
            assert int(np.argmax(e.val_metric)) == stop - 3
    assert any("stopped_epoch" in r.extra for r in early), "lr=1 should plateau within 15 epochs"
    for e, f in zip(early, full, strict=True):
        n = len(e.val_metric)
        assert e.val_metric == pytest.approx(f.val_metric[:n], abs=1e-6)


def test_validation_only_leaves_the_test_split_alone(digits):
    res = train_stack(digits, [_cfg(0)], _ones(1), evaluate_test=False)[0]
    assert res.status == "done" and not res.metrics and not res.test_logits
    vm = res.extra["val_metrics"]
    assert vm["balanced_accuracy"] == pytest.approx(max(res.val_metric), abs=1e-6)


def test_bad_patience_and_rates_name_the_fix(digits):
    with pytest.raises(InvalidValueError, match=r"patience.*patience=5"):
        train_stack(digits, [_cfg(0)], _ones(1), patience=0)
    with pytest.raises(InvalidValueError, match=r"`lr`.*lr=1e-3"):
        train_stack(digits, [_cfg(0, lr=-1.0)], _ones(1))
    with pytest.raises(InvalidValueError, match=r"`weight_decay`.*weight_decay=1e-4"):
        train_stack(digits, [_cfg(0, weight_decay=float("nan"))], _ones(1))
    with pytest.raises(InvalidValueError, match=r"drw_epochs.*Pass both"):
        train_stack(digits, [_cfg(0)], _ones(1), late_class_weights=_ones(1))


def test_slices_that_left_the_stack_keep_their_optimizer_state_for_the_diagnostics(digits):
    cfgs = [_cfg(s, "adam", epochs=12, lr=0.05) for s in (0, 1, 2)]
    res = train_stack(digits, cfgs, _ones(3), patience=1, diagnostics=True)
    assert any("stopped_epoch" in r.extra for r in res)
    for r in res:  # every reported slice's update shares read its own optimizer state
        shares = r.extra["diagnostics"]["final"]["update_shares"]
        assert shares.get("missing") is None and shares["share"] is not None
