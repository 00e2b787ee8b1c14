"""Every registered loss through one checklist (tests/loss_harness.py holds the cases).

Reference formula (float64, value and gradient), gradcheck, logits at ±100,
float16/bfloat16, empty and all-ignored batches, reductions, module equals
function, buffers in state_dict. Plus the identities with PyTorch built-ins
and a registry walk that fails when a registered loss has no case.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import weightlab.functional as WF
from loss_harness import CASES, COUNTS, IGNORE, C, all_ignored, finite, make_inputs
from weightlab.functional import LossParts
from weightlab.losses import LOSSES, DeferredReweighting, LDAMLoss

NAMES = sorted(CASES)


def test_every_registered_loss_has_a_case():
    assert set(LOSSES.names()) == set(CASES), (
        f"registered without a harness case: {set(LOSSES.names()) - set(CASES)}; "
        f"cases for unregistered names: {set(CASES) - set(LOSSES.names())}"
    )


def _grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    value = fn(x)
    (g,) = torch.autograd.grad(value, x)
    return value.detach(), g


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("extra", [0, 3])
def test_matches_reference_value_and_gradient(name, extra):
    case = CASES[name]
    x, target = make_inputs(case, n=7, extra=extra)
    if case.kind == "multiclass":
        target[1] = IGNORE  # ignore_index is honoured by every multi-class loss
    sample = torch.rand(7, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.5
    for config in case.configs:
        for kwargs in (config, {**config, "sample_weight": sample}):
            ours, g_ours = _grad(lambda x, kw=kwargs: case.fn(x, target, **kw), x)
            ref, g_ref = _grad(lambda x, kw=kwargs: case.reference(x, target, **kw), x)
            torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12, msg=str(kwargs))
            torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-12, msg=str(kwargs))


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    case = CASES[name]
    x, target = make_inputs(case, n=4)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: case.call(x, target, reduction="sum"), (x,))


@pytest.mark.parametrize("name", NAMES)
def test_logits_at_plus_minus_100_are_finite(name):
    case = CASES[name]
    x, target = make_inputs(case, n=6, dtype=torch.float32)
    x = (torch.sign(x) * 100.0).requires_grad_(True)
    value = case.call(x, target)
    value.backward()
    assert finite(value) and finite(x.grad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computed_in_float32(name, dtype):
    case = CASES[name]
    x32, target = make_inputs(case, n=8, dtype=torch.float32)
    x = x32.to(dtype).requires_grad_(True)
    value = case.call(x, target.to(dtype) if target.is_floating_point() else target)
    assert value.dtype == dtype
    t32 = target.float() if target.is_floating_point() else target
    expected = case.call(x.detach().float(), t32)
    torch.testing.assert_close(value.float(), expected, rtol=1e-2, atol=1e-2)
    value.backward()
    assert x.grad.dtype == dtype and finite(x.grad)


@pytest.mark.parametrize("name", NAMES)
def test_empty_and_all_ignored_batches_give_zero_with_zero_grad(name):
    case = CASES[name]
    x, target = make_inputs(case, n=0)
    x.requires_grad_(True)
    value = case.call(x, target)
    value.backward()
    assert value.item() == 0.0 and x.grad.shape == x.shape
    x, target = make_inputs(case, n=5)
    x.requires_grad_(True)
    target, extra = all_ignored(case, x, target)
    value = case.call(x, target, **extra)
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("name", NAMES)
def test_reductions_agree(name):
    case = CASES[name]
    x, target = make_inputs(case, n=6)
    none = case.call(x, target, reduction="none")
    total = case.call(x, target, reduction="sum")
    parts = case.call(x, target, reduction="parts")
    mean = case.call(x, target, reduction="mean")
    assert isinstance(parts, LossParts)
    torch.testing.assert_close(none.sum(), total)
    torch.testing.assert_close(parts.total, total)
    torch.testing.assert_close(parts.mean(), mean)


@pytest.mark.parametrize("name", NAMES)
def test_module_equals_function_and_buffers_round_trip(name):
    case = CASES[name]
    module = LOSSES.get(name)(**case.module_kwargs)
    x, target = make_inputs(case, n=6, dtype=torch.float32)
    torch.testing.assert_close(module(x, target), case.call(x, target))
    state = module.state_dict()
    assert set(case.buffers) <= set(state), sorted(state)
    fresh = LOSSES.get(name)(**case.module_kwargs)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(x, target), module(x, target))
    assert repr(module).startswith(type(module).__name__)


# ---------------------------------------------------------------- identities with built-ins


def _same(a_fn, b_fn, x):
    a, ga = _grad(a_fn, x)
    b, gb = _grad(b_fn, x)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-12)


W = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=torch.float64)


@pytest.mark.parametrize("extra", [0, 3])
def test_softmax_identities_with_cross_entropy(extra):
    x, y = make_inputs(CASES["focal"], n=9, extra=extra)
    y[0] = IGNORE

    def ce(x):
        return F.cross_entropy(x, y, weight=W)

    _same(lambda x: WF.focal_loss(x, y, gamma=0.0, class_weight=W), ce, x)
    _same(lambda x: WF.logit_adjusted_loss(x, y, counts=COUNTS, tau=0.0, class_weight=W), ce, x)
    _same(lambda x: WF.balanced_softmax_loss(x, y, [7.0] * C, class_weight=W), ce, x)
    _same(lambda x: WF.ldam_loss(x, y, COUNTS, max_m=0.0, s=1.0, class_weight=W), ce, x)
    _same(
        lambda x: WF.class_balanced_loss(x, y, COUNTS, beta=0.0),
        lambda x: F.cross_entropy(x, y),
        x,
    )
    _same(lambda x: WF.cross_entropy(x, y, class_weight=W), ce, x)


def test_sigmoid_identities_with_bce():
    x, t = make_inputs(CASES["asymmetric"], n=9)
    pw = torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=torch.float64)

    def bce(x):
        return F.binary_cross_entropy_with_logits(x, t)

    _same(lambda x: WF.sigmoid_focal_loss(x, t, gamma=0.0), bce, x)
    _same(lambda x: WF.asymmetric_loss(x, t, gamma_neg=0.0, gamma_pos=0.0, clip=0.0), bce, x)
    _same(
        lambda x: WF.binary_cross_entropy(x, t, pos_weight=pw),
        lambda x: F.binary_cross_entropy_with_logits(x, t, pos_weight=pw),
        x,
    )


def test_torchvision_sigmoid_focal_formula_elementwise():
    # torchvision.ops.sigmoid_focal_loss(x, t, alpha=0.25, gamma=2, reduction="none"), written out
    x, t = make_inputs(CASES["sigmoid_focal"], n=6)
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    tv = ce * (1 - p_t) ** 2 * (0.25 * t + 0.75 * (1 - t))
    ours = WF.sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0, reduction="none")
    torch.testing.assert_close(ours, tv, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.99, 2.0])
def test_focal_gradient_finite_as_p_t_tends_to_one(gamma):
    # gamma in (0, 1): d/dp (1-p)^gamma is infinite at p = 1; the loss gradient is not.
    for margin in (5.0, 20.0, 40.0, 100.0, 1e4):
        x = torch.tensor([[margin, 0.0, 0.0]], requires_grad=True)
        value = WF.focal_loss(x, torch.tensor([0]), gamma=gamma)
        value.backward()
        assert finite(value) and finite(x.grad), (margin, x.grad)
    for margin in (5.0, 10.0, 20.0):  # where the float64 composite is still accurate
        x = torch.tensor([[margin, 0.0, 0.0]], dtype=torch.float64)

        def composite(x):
            return -(1 - torch.softmax(x, 1)[0, 0]) ** gamma * torch.log_softmax(x, 1)[0, 0]

        ours, g_ours = _grad(lambda x: WF.focal_loss(x, torch.tensor([0]), gamma=gamma), x)
        ref, g_ref = _grad(composite, x)
        torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0.0)
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=0.0)


def test_adjust_logits_posthoc():
    x = torch.tensor([[1.0, 0.5, 0.2]])
    prior = torch.tensor([0.7, 0.2, 0.1])
    torch.testing.assert_close(WF.adjust_logits(x, prior, tau=1.0), x - torch.log(prior))
    torch.testing.assert_close(WF.adjust_logits(x, prior * 10, tau=0.5), x - 0.5 * torch.log(prior))
    assert torch.equal(WF.adjust_logits(x, prior, tau=0.0), x)
    assert WF.adjust_logits(x.half(), prior).dtype == torch.float16


def test_class_balanced_weights_match_the_weights_module():
    weights = pytest.importorskip("weightlab.weights")
    ours = WF.class_balanced_weights(COUNTS, beta=0.99)
    theirs = weights.class_weights(COUNTS, "effective_number", beta=0.99, normalize="mean")
    torch.testing.assert_close(ours, torch.as_tensor(theirs, dtype=torch.float32))
    assert abs(float(ours.sum()) - C) < 1e-5


def test_ldam_margins_follow_the_paper():
    m = WF.ldam_margins([16.0, 1.0, 81.0], max_m=0.5)
    torch.testing.assert_close(m, torch.tensor([0.25, 0.5, 0.5 / 3], dtype=torch.float64))


def test_deferred_reweighting_switches_at_start_epoch_and_sets_the_buffer():
    schedule = DeferredReweighting(COUNTS, start_epoch=3, beta=0.999)
    assert torch.equal(schedule.weights(0), torch.ones(C))
    assert torch.equal(schedule.weights(2), torch.ones(C))
    late = schedule.weights(3)
    torch.testing.assert_close(late, WF.class_balanced_weights(COUNTS, beta=0.999))
    loss = LDAMLoss(COUNTS)
    schedule.apply(loss, 5)
    assert torch.equal(loss.class_weight, late)
    assert "class_weight" in loss.state_dict()
    x, y = make_inputs(CASES["ldam"], n=6, dtype=torch.float32)
    torch.testing.assert_close(loss(x, y), WF.ldam_loss(x, y, COUNTS, class_weight=late))
