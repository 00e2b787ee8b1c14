"""The batched softmax kernel against each lab loss's functional: value, gradient, gradcheck.

Reference: the registry loss's functional (``reduction="parts"``) slice by
slice; every lab weighting with random parameters from its registry ranges,
several slices with different forms in one call, float64 and extreme logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightlab.lab.loss_kernel import FORMS, softmax_form, stack_forms, stacked_form_parts
from weightlab.lab.weightings import LOSS_WEIGHTINGS, _literature_loss, cross_entropy_parts
from weightlab.losses import LOSSES

COUNTS = (120, 60, 25, 9, 3)


def _params(name, rng):
    out = {}
    for key, tp in LOSSES.params(name).items():
        out[key] = float(rng.uniform(tp.low, tp.high))
    return out


def _reference(name, params, z, y, w):
    if name == "cross_entropy":
        return cross_entropy_parts(z, y, w)
    return _literature_loss(name, COUNTS, tuple(sorted(params.items())))(z, y, w)


def test_every_lab_loss_has_a_form():
    assert set(LOSS_WEIGHTINGS) <= set(FORMS)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_one_call_over_slices_with_different_forms_equals_each_functional(scale):
    rng = np.random.default_rng(0)
    names = ["cross_entropy", *LOSS_WEIGHTINGS] * 2
    params = [_params(n, rng) if n != "cross_entropy" else {} for n in names]
    k, b, c = len(names), 33, len(COUNTS)
    z = (torch.randn(k, b, c, dtype=torch.float64) * scale).requires_grad_()
    y = torch.from_numpy(rng.integers(0, c, (k, b)))
    w = torch.from_numpy(rng.uniform(0.2, 3.0, (k, c)))
    forms = stack_forms(
        [softmax_form(n, COUNTS, p) for n, p in zip(names, params, strict=True)], c, torch.float64
    )
    parts = stacked_form_parts(z, y, w, forms)
    (parts.total / parts.normalizer).sum().backward()
    got_grad = z.grad.clone()
    for i, (n, p) in enumerate(zip(names, params, strict=True)):
        zi = z.detach()[i].clone().requires_grad_()
        ref = _reference(n, p, zi, y[i], w[i])
        torch.testing.assert_close(
            parts.total[i], ref.total.to(torch.float64), rtol=1e-9, atol=1e-9
        )
        torch.testing.assert_close(parts.normalizer[i], ref.normalizer.to(torch.float64))
        (ref.total / ref.normalizer).backward()
        torch.testing.assert_close(got_grad[i], zi.grad, rtol=1e-7, atol=1e-9, msg=n)


@pytest.mark.parametrize("name", ["cross_entropy", *LOSS_WEIGHTINGS])
def test_gradcheck_in_float64(name):
    rng = np.random.default_rng(1)
    p = _params(name, rng) if name != "cross_entropy" else {}
    if "gamma" in p:
        p["gamma"] = 1.5  # the focal factor's clamp at 1e-12 is not smooth where it binds
    forms = stack_forms([softmax_form(name, COUNTS, p)] * 2, len(COUNTS), torch.float64)
    z = torch.randn(2, 7, len(COUNTS), dtype=torch.float64, requires_grad=True)
    y = torch.from_numpy(rng.integers(0, len(COUNTS), (2, 7)))
    w = torch.from_numpy(rng.uniform(0.5, 2.0, (2, len(COUNTS))))
    assert torch.autograd.gradcheck(
        lambda x: stacked_form_parts(x, y, w, forms).total, (z,), eps=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("name", ["cross_entropy", *LOSS_WEIGHTINGS])
def test_extreme_logits_stay_finite_and_match(name):
    p = {"gamma": 0.5} if name == "focal" else {}
    c = len(COUNTS)
    z = torch.tensor(
        [[[1e4, -1e4, 0.0, 0.0, 0.0], [-1e4, 1e4, 0.0, 0.0, 0.0]]],
        dtype=torch.float32,
        requires_grad=True,
    )
    y = torch.tensor([[0, 0]])  # one row right and saturated, one wrong and saturated
    w = torch.ones(1, c)
    forms = stack_forms([softmax_form(name, COUNTS, p)], c)
    parts = stacked_form_parts(z, y, w, forms)
    (parts.total / parts.normalizer).sum().backward()
    assert torch.isfinite(parts.total).all() and torch.isfinite(z.grad).all()
    zi = z.detach()[0].clone().requires_grad_()
    ref = _reference(name, p, zi, y[0], w[0])
    torch.testing.assert_close(parts.total[0], ref.total.float(), rtol=1e-4, atol=1e-3)


def test_no_form_for_a_loss_the_kernel_does_not_know():
    assert softmax_form("asymmetric", COUNTS) is None
