"""The fused sigmoid-family Functions (focal, asymmetric, one-hot class-balanced) on every branch.

Each branch of the closed-form derivative is checked against the plain
autograd composite (the path taken when a target requires grad) and by
``gradcheck`` in float64; extreme logits give finite values and gradients for
every exponent, also ``0 < gamma < 1``.
"""

from __future__ import annotations

import pytest
import torch

import weightlab.functional as WF
from loss_harness import COUNTS, ref_class_balanced, ref_sigmoid_focal

GAMMAS = [0.0, 0.3, 1.0, 1.5, 2.0, 3.0]


def _inputs(shape=(6, 4), soft=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    t = torch.rand(shape, generator=g, dtype=torch.float64)
    if not soft:
        t = (t > 0.6).to(torch.float64)
    return x, t


def _fused_and_composite(fn, x, t, **kw):
    """Value and input gradient of the fused path and of the composite path (target needs grad)."""
    out = []
    for target in (t, t.clone().requires_grad_(True)):
        xx = x.detach().clone().requires_grad_(True)
        value = fn(xx, target, **kw)
        (g,) = torch.autograd.grad(value.sum(), xx)
        out.append((value.detach(), g))
    return out


SIGMOID_FOCAL_KW = [
    {"gamma": g, **extra}
    for g in GAMMAS
    for extra in (
        {},
        {"alpha": 0.25},
        {"alpha": 1.0},
        {"class_weight": [[1.0, 2.0], [0.5, 1.0], [0.0, 1.0], [2.0, 0.25]]},
        {"alpha": 0.7, "sample_weight": torch.linspace(0.5, 2.0, 6, dtype=torch.float64)},
    )
]


@pytest.mark.parametrize("kw", SIGMOID_FOCAL_KW, ids=str)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_sigmoid_focal_fused_equals_composite(kw, soft, reduction):
    x, t = _inputs(soft=soft)
    (v, g), (v_ref, g_ref) = _fused_and_composite(
        WF.sigmoid_focal_loss, x, t, reduction=reduction, **kw
    )
    torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_focal_matches_reference_with_soft_targets_and_weight_mean(gamma):
    x, t = _inputs(soft=True, seed=1)
    cw = [[1.0, 2.0], [0.5, 1.0], [1.0, 1.0], [2.0, 0.25]]
    ours = WF.sigmoid_focal_loss(x, t, gamma=gamma, class_weight=cw)
    torch.testing.assert_close(ours, ref_sigmoid_focal(x, t, gamma=gamma, class_weight=cw))
    weighted = WF.sigmoid_focal_loss(x, t, gamma=gamma, alpha=0.3, normalize="weight")
    cwt = torch.tensor(cw, dtype=torch.float64)
    applied = 0.3 * t + 0.7 * (1 - t)
    expected = WF.sigmoid_focal_loss(x, t, gamma=gamma, alpha=0.3, reduction="sum") / applied.sum()
    torch.testing.assert_close(weighted, expected)
    assert cwt.shape == (4, 2)


ASYMMETRIC_KW = [
    {"gamma_neg": gn, "gamma_pos": gp, "clip": clip, **extra}
    for gn in (0.0, 0.5, 1.0, 2.0, 4.0)
    for gp in (0.0, 0.4, 1.0, 2.0)
    for clip in (0.0, 0.05, 0.3)
    for extra in ({}, {"class_weight": [[1.0, 2.0], [0.5, 1.0], [0.0, 1.0], [2.0, 0.25]]})
]


@pytest.mark.parametrize("kw", ASYMMETRIC_KW, ids=str)
@pytest.mark.parametrize("soft", [False, True])
def test_asymmetric_fused_equals_composite(kw, soft):
    x, t = _inputs(soft=soft, seed=2)
    sw = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    for extra in ({"reduction": "none"}, {"reduction": "sum", "sample_weight": sw}):
        (v, g), (v_ref, g_ref) = _fused_and_composite(WF.asymmetric_loss, x, t, **kw, **extra)
        torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("extra", [0, 3])
def test_class_balanced_sigmoid_focal_matches_reference(gamma, extra):
    g = torch.Generator().manual_seed(4)
    shape = (7, 5) + ((extra,) if extra else ())
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (7,) + ((extra,) if extra else ()), generator=g)
    y[2] = -100
    sw = torch.rand(7, generator=g, dtype=torch.float64) + 0.5
    for kw in ({}, {"sample_weight": sw}):
        for loss_type in ("sigmoid", "focal"):
            xx = x.clone().requires_grad_(True)
            ours = WF.class_balanced_loss(
                xx, y, COUNTS, beta=0.99, loss_type=loss_type, gamma=gamma, **kw
            )
            (g_ours,) = torch.autograd.grad(ours, xx)
            xr = x.clone().requires_grad_(True)
            ref = ref_class_balanced(
                xr, y, COUNTS, beta=0.99, loss_type=loss_type, gamma=gamma, **kw
            )
            (g_ref,) = torch.autograd.grad(ref, xr)
            torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-12)


def _all_calls(x, t, y, gamma):
    yield lambda x: WF.sigmoid_focal_loss(x, t, gamma=gamma, alpha=0.25, reduction="sum")
    yield lambda x: WF.sigmoid_focal_loss(x, t.clamp(0.1, 0.9), gamma=gamma, reduction="sum")
    for clip in (0.0, 0.05):
        yield lambda x, c=clip: WF.asymmetric_loss(
            x, t, gamma_neg=gamma, gamma_pos=gamma, clip=c, reduction="sum"
        )
    yield lambda x: WF.class_balanced_loss(
        x, y, [5, 3, 2, 1], beta=0.9, loss_type="focal", gamma=gamma, reduction="sum"
    )


@pytest.mark.parametrize("gamma", GAMMAS)
def test_gradcheck_every_branch(gamma):
    x, t = _inputs(shape=(3, 4), seed=5)
    y = torch.tensor([0, 3, 1])
    for fn in _all_calls(x, t, y, gamma):
        assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(True),))


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_at_extreme_logits(gamma, dtype):
    x = torch.tensor([[100.0, -100.0, 100.0, -100.0], [30.0, -30.0, 1e4, -1e4]], dtype=dtype)
    t = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]], dtype=dtype)
    y = torch.tensor([0, 2])
    for fn in _all_calls(x, t, y, gamma):
        xx = x.clone().requires_grad_(True)
        value = fn(xx)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(xx.grad).all(), (gamma, xx.grad)


def test_double_backward_raises_a_clear_error():
    x, t = _inputs(shape=(3, 4), seed=6)
    x.requires_grad_(True)
    for value in (
        WF.sigmoid_focal_loss(x, t),
        WF.asymmetric_loss(x, t),
        WF.class_balanced_loss(x, torch.tensor([0, 1, 2]), [5, 3, 2, 1], loss_type="focal"),
    ):
        with pytest.raises(RuntimeError, match="has no double backward"):
            torch.autograd.grad(value, x, create_graph=True)
    t.requires_grad_(True)  # the composite path: twice differentiable
    (g,) = torch.autograd.grad(WF.sigmoid_focal_loss(x, t), x, create_graph=True)
    assert g.requires_grad


def test_soft_target_gradient_flows_through_the_composite():
    x, t = _inputs(shape=(3, 4), soft=True, seed=7)
    t.requires_grad_(True)
    WF.sigmoid_focal_loss(x, t, gamma=2.0).backward()
    assert t.grad is not None and torch.isfinite(t.grad).all()
    t.grad = None
    WF.asymmetric_loss(x, t).backward()
    assert t.grad is not None and torch.isfinite(t.grad).all()


def test_no_grad_forward_equals_grad_forward():
    x, t = _inputs(seed=8)
    with torch.no_grad():
        a = WF.sigmoid_focal_loss(x, t, gamma=0.5, reduction="none")
        b = WF.asymmetric_loss(x, t, reduction="none")
    torch.testing.assert_close(a, WF.sigmoid_focal_loss(x, t, gamma=0.5, reduction="none"))
    torch.testing.assert_close(b, WF.asymmetric_loss(x, t, reduction="none"))
